"""The policy checked where the privilege is: every plan, by the workers that would send it.

The control process checks each scan against the policy before planning it; but it holds no
capability, and it parses everything clients send. The workers hold CAP_NET_RAW, so they check
every plan again: a control process that was taken over cannot point them at addresses outside
policy.allowed_targets (or inside policy.excluded_targets), nor make them send faster than
policy.max_rate. The policy is plain data here: the engine reads no configuration itself, it is
given the guard and a callable that reads the file again (compose.py, for the daemon and the
one-shot scan).
"""

from __future__ import annotations

import socket
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from netscand.engine.plan import Plan
from netscand.engine.probes import PROBES
from netscand.engine.ranges import Ranges, of_cidrs
from netscand.engine.shm import REFUSE_RATE, REFUSE_TARGET

ROUTES = Path("/proc/net/route")  # this network namespace's main routing table
RTF_GATEWAY = 0x2


class PolicySource(Protocol):
    """What the guard is built from: the policy section of the configuration. Read-only
    (properties), so a frozen dataclass such as config.PolicyConfig is one."""

    @property
    def allowed_targets(self) -> Sequence[str]: ...
    @property
    def excluded_targets(self) -> Sequence[str]: ...
    @property
    def max_rate(self) -> float: ...


@dataclass(frozen=True)
class PlanGuard:
    allowed: Ranges
    excluded: Ranges
    max_rate: float
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _ex_starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_starts", tuple(lo for lo, _ in self.allowed))
        object.__setattr__(self, "_ex_starts", tuple(lo for lo, _ in self.excluded))

    @classmethod
    def of(cls, policy: PolicySource) -> PlanGuard:
        return cls(of_cidrs(policy.allowed_targets), of_cidrs(policy.excluded_targets), policy.max_rate)

    def refusal(self, plan: Plan, gateways: frozenset[int] = frozenset()) -> int:
        """0 when the plan may run, else the REFUSE_* code saying why. `gateways` are let
        through whatever the policy says, for a plan whose probe type resolves neighbours (ARP)
        alone: resolving the next hop to an allowed target is routing, and ARP never leaves the
        segment; any other probe sent to a gateway would be a probe of it."""
        if not 0 < plan.rate <= self.max_rate:  # NaN too
            return REFUSE_RATE
        hosts: Sequence[int] = plan.hosts
        ptype = PROBES.get(plan.kind)
        if gateways and ptype is not None and ptype.resolves_neighbours:
            hosts = [h for h in hosts if h not in gateways]
        return 0 if self.permits(hosts) else REFUSE_TARGET

    def permits(self, hosts: Sequence[int]) -> bool:
        """Every host inside an allowed range and outside every excluded one."""
        if not hosts:
            return True
        lo, hi = min(hosts), max(hosts)
        # A plan is usually a run of one allowed block: two comparisons instead of one per host.
        if self._inside(lo, hi, self.allowed, self._starts) and not self._meets(lo, hi):
            return True
        return all(self._inside(h, h, self.allowed, self._starts) and not self._meets(h, h) for h in hosts)

    @staticmethod
    def _inside(lo: int, hi: int, ranges: Ranges, starts: tuple[int, ...]) -> bool:
        i = bisect_right(starts, lo) - 1
        return i >= 0 and hi <= ranges[i][1]

    def _meets(self, lo: int, hi: int) -> bool:
        """Whether an excluded range overlaps [lo, hi]."""
        i = bisect_right(self._ex_starts, hi) - 1  # the last excluded range starting at or below hi
        return i >= 0 and self.excluded[i][1] >= lo


def route_gateways(routes: Path = ROUTES) -> frozenset[int]:
    """The gateways of this namespace's main routing table (what the runner ARPs for to reach
    routed targets). Read only when an ARP plan is refused: never on a hot path."""
    found = set()
    try:
        lines = routes.read_text().splitlines()[1:]
    except OSError:
        return frozenset()
    for line in lines:
        cols = line.split()
        try:
            if len(cols) > 3 and int(cols[3], 16) & RTF_GATEWAY:
                found.add(socket.ntohl(int(cols[2], 16)))
        except ValueError:
            continue
    return frozenset(found)
