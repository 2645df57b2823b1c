"""What the daemon's configuration lets scans do: read at start and replaced by a reload."""

from __future__ import annotations

from dataclasses import dataclass, field

from netscand.config import WebhooksConfig
from netscand.scan.policy import Policy
from netscand.scan.spec import Discovery


@dataclass(frozen=True)
class Limits:
    rate: float
    retries: int
    max_running: int
    policy: Policy
    discovery: Discovery = field(default_factory=Discovery)
    max_queued_per_owner: int = 16
    retention_days: int = 365  # 0: finished scans are kept for ever
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)  # the allowlist, timeouts, retries


class CurrentLimits:
    """The limits of now, in one holder that admission, the running scans and retention all
    read: a reload replaces `now`, and every part sees it at once."""

    def __init__(self, limits: Limits) -> None:
        self.now = limits
