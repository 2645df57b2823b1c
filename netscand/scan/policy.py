"""The target policy: which addresses a scan may reach, how many at once, and how fast.

Checked for the API and the one-shot CLI alike, before anything is planned, and again when a
queued scan starts (a reload may have narrowed it since): a target that reaches outside the
allowed blocks is refused whole (naming the first range outside), while excluded addresses
inside allowed blocks are quietly skipped and counted. Socket-only blocks (loopback and
link-local by default) are refused to remote (HTTPS) clients, whatever their token: from the
daemon's host they reach what no remote client should reach through it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netscand.config import PolicyConfig
from netscand.engine.ranges import of_cidrs
from netscand.scan.targets import Targets, exclude


class PolicyError(Exception):
    """A scan the policy refuses: `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, title: str, detail: str, field: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.field = status, title, detail, field


def _blocks(cidrs: list[str]) -> Targets:
    return Targets(of_cidrs(cidrs))


def _range_text(lo: int, hi: int) -> str:
    first, last = ipaddress.IPv4Address(lo), ipaddress.IPv4Address(hi)
    if lo == hi:
        return str(first)
    nets = list(ipaddress.summarize_address_range(first, last))
    return str(nets[0]) if len(nets) == 1 else f"{first}-{last}"


@dataclass(frozen=True)
class Policy:
    allowed: Targets
    excluded: Targets
    allowed_text: str  # the configured blocks as written, for error messages
    max_addresses: int
    max_rate: float
    socket_only: tuple[tuple[str, Targets], ...] = ()  # each block as written, and its addresses

    @classmethod
    def from_config(cls, c: PolicyConfig) -> Policy:
        return cls(_blocks(c.allowed_targets), _blocks(c.excluded_targets), ", ".join(c.allowed_targets) or "none",
                   c.max_target_addresses, c.max_rate,
                   tuple((block, _blocks([block])) for block in c.socket_only_targets))

    def apply(self, targets: Targets, remote: bool = False) -> tuple[Targets, int]:
        """The addresses to scan, and how many excluded ones were skipped. `remote`: asked for by
        an HTTPS client, who may not scan the socket-only blocks."""
        if targets.count > self.max_addresses:
            raise PolicyError(422, "Target too large", f"the target has {targets.count} addresses; "
                              f"at most {self.max_addresses} are allowed", "target")
        outside = exclude(targets, self.allowed)
        if outside.count:
            raise PolicyError(403, "Target not allowed", f"{_range_text(*outside.ranges[0])} is outside the "
                              f"allowed targets ({self.allowed_text})", "target")
        kept = exclude(targets, self.excluded)
        if not kept.count:
            raise PolicyError(403, "Target not allowed", "every address of the target is in the excluded targets",
                              "target")
        if remote:
            self._check_remote(kept)
        return kept, targets.count - kept.count

    def _check_remote(self, targets: Targets) -> None:
        for block, addresses in self.socket_only:
            if exclude(targets, addresses).count < targets.count:
                raise PolicyError(403, "Target not allowed", f"{block} may only be scanned by clients of the "
                                  "daemon's Unix socket (policy.socket_only_targets)", "target")

    def check_rate(self, rate: float | None) -> None:
        if rate is not None and rate > self.max_rate:
            raise PolicyError(422, "Rate too high", f"rate {rate:g} is above the policy's maximum of "
                              f"{self.max_rate:g} probes per second", "rate")
