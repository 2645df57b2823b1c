"""The queue: accepted scans waiting for a place to run, in the order they came. Each holds its
owner's claim (admission.Claims) until it leaves, to run or because it was stopped."""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netscand.netinfo import NetInfo
from netscand.scan.policy import Policy
from netscand.scan.profiles import ScanRequest
from netscand.scan.spec import ScanSpec

if TYPE_CHECKING:  # admission.py makes the Queued entries, so it imports this module
    from netscand.scan.admission import Claims


@dataclass
class Queued:
    """An accepted scan waiting to run, with what it was accepted under."""

    id: str
    owner: str | None
    request: ScanRequest
    spec: ScanSpec
    net: NetInfo
    remote: bool  # asked for over HTTPS: the policy's socket-only blocks are not for it


class ScanQueue:
    def __init__(self, claims: Claims) -> None:
        self.claims = claims
        self.waiting: deque[Queued] = deque()

    def __len__(self) -> int:
        return len(self.waiting)

    def push(self, queued: Queued) -> None:
        self.waiting.append(queued)

    def pop(self) -> Queued:
        """The scan to run next; its owner's place is free again."""
        queued = self.waiting.popleft()
        self.claims.release(queued.owner)
        return queued

    def remove(self, scan_id: str) -> None:
        for queued in self.waiting:
            if queued.id == scan_id:
                self.waiting.remove(queued)
                self.claims.release(queued.owner)
                return


def recheck(queued: Queued, policy: Policy) -> ScanSpec:
    """The queued scan's spec under the policy of now: a reload may have narrowed it since the
    scan was accepted. Raises PolicyError when the policy now refuses it."""
    targets, _ = policy.apply(queued.spec.targets, remote=queued.remote)
    policy.check_rate(queued.request.rate)
    return dataclasses.replace(queued.spec, targets=targets, rate=min(queued.spec.rate, policy.max_rate))
