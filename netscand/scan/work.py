"""A scan's units of work: one probe type over some hosts behind one route, and the engine plan
that runs it.

Targets stay address ranges until a plan is written: each route's addresses wait in a feed,
cut one group of works at a time, and a work's host tuple is built only for its plan (which
bounds it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from netscand.engine import plan as plans
from netscand.engine.clock import TICK_BITS
from netscand.engine.probes import ProbeType
from netscand.engine.shm import PLAN_SHARDS, PLAN_SLOTS, SHARD_MAX
from netscand.netinfo import Route
from netscand.scan.dispatch import shard_size
from netscand.scan.ports import SOURCE_PORTS
from netscand.scan.profiles import PACED_SILENT_PORTS
from netscand.scan.result import Host
from netscand.scan.spec import Pacing, ScanSpec
from netscand.scan.targets import Targets

# Above Linux's default ephemeral range, so no local socket owns a reply, and above every paced
# plan's source ports (SOURCE_PORTS), so an unpaced plan's reply port is never a paced one's.
SPORT_BASE = SOURCE_PORTS[1] + 1
# Each plan slot's plans take the next TICK_BITS-wide block (engine/plan.py source_ports).
assert SPORT_BASE + (PLAN_SLOTS << TICK_BITS) <= 0x10000
ZERO_MAC = b"\0" * 6

Probes = tuple[tuple[ProbeType, tuple[int, ...]], ...]  # (probe type, ports) of works that run together


def plan_retries(probe: ProbeType, scan_retries: int) -> int:
    """The retry passes a plan of `probe` sends: its own (ARP's), or else the scan's."""
    return scan_retries if probe.retries is None else probe.retries


@dataclass(frozen=True)
class Work:
    probe: ProbeType
    route: Route
    hosts: Targets  # expanded only when its plan is written
    next_hop: bytes | None  # the MAC every frame goes to; None: each on-link host's own (its ARP answer)
    ports: tuple[int, ...]
    group: int  # works of one group run together, sharing the rate
    rate_part: float  # its fraction of the scan's rate: its part of the group's probes (Feed.cut)
    discovery: bool = False  # its answers only prove hosts up
    pacing: Pacing | None = None  # its plans pace each host (a paced spec's port scan)
    index: int = 0  # its place in its group: (group, index) names its plan in a checkpoint

    @property
    def port_scan(self) -> bool:
        """Its answers are the scan's port states (not a discovery ping's)."""
        return self.probe.port_states and not self.discovery

    def macs(self, hosts: tuple[int, ...], known: Mapping[int, Host]) -> tuple[bytes, ...]:
        """Where each host's frames go: the next hop, or else the MAC its ARP answer gave."""
        if self.next_hop is None:
            return tuple((h.mac if (h := known.get(ip)) else None) or ZERO_MAC for ip in hosts)
        return (self.next_hop,) * len(hosts)

    def plan(self, hosts: tuple[int, ...], macs: tuple[bytes, ...], spec: ScanSpec, workers: int,
             slot: int, gen: int, fixed: tuple[bytes, int] | None = None) -> plans.Plan:
        """The plan that runs this work over `hosts` (its own, expanded) from plan slot `slot`;
        a resumed one with the key and shard size it had (`fixed`: scan/resume.py)."""
        probe = self.probe
        t = probe.timeout_ms or spec.timeout_ms  # fixed; None adapts
        size = len(hosts) * len(self.ports)
        shard = shard_size(size, workers) if self.pacing is None else paced_shard(len(hosts), len(self.ports), workers)
        key, shard = fixed or (os.urandom(16), shard)
        return plans.Plan(
            gen=gen, kind=probe.kind, slot=slot, share=min(workers, -(-size // shard)),
            retries=plan_retries(probe, spec.retries), key=key,
            ifindex=self.route.ifindex, src_ip=self.route.src_ip, src_mac=self.route.src_mac,
            sport_base=SPORT_BASE + (slot << TICK_BITS), rate=spec.rate * self.rate_part,
            timeout_init_ms=t or plans.TIMEOUT_INIT_MS, timeout_min_ms=t or plans.TIMEOUT_MIN_MS,
            timeout_max_ms=t or plans.TIMEOUT_MAX_MS,
            shard_size=shard, hosts=hosts, macs=macs, ports=self.ports,
            flags=self._flags(spec), **self._paced())

    def _flags(self, spec: ScanSpec) -> int:
        loopback = plans.FLAG_LOOPBACK if self.route.loopback else 0
        return loopback | (plans.FLAG_ADAPTIVE if spec.adaptive and self.pacing is None else 0)

    def _paced(self) -> dict[str, int]:
        """A paced plan's fields: its gap, jitter and source ports, and its budget in probes: a
        host that answers none of its first PACED_SILENT_PORTS ports (the most frequently open:
        its ports come in frequency order, and the engine sends those first) gets no more. The
        runner times no paced plan out: a host that answers is probed to its last port."""
        if self.pacing is None:
            return {}
        p = self.pacing
        return {"gap_ms": p.gap_ms, "jitter_ms": p.jitter_ms, "silent_probes": min(len(self.ports), PACED_SILENT_PORTS),
                "sport_lo": p.sport_lo, "sport_hi": p.sport_hi}

    def paced_duration_s(self, udp_sends: int) -> float:
        """How long one of its paced plans lasts (paced_duration_s)."""
        assert self.pacing is not None
        return paced_duration_s(self.probe, len(self.ports), self.pacing, udp_sends)


def paced_duration_s(probe: ProbeType, nports: int, pacing: Pacing, udp_sends: int) -> float:
    """How long a paced plan lasts: each host's ports one per mean gap, a UDP port counted
    1 + retries times (nearly all stay silent and are sent again), as the rate split counts
    them. A TCP port is counted once: most hosts answer nearly every SYN at once; one that drops
    most ports (yet answers some, so is not given up) takes up to 1 + retries times as long, as
    its retry round is paced too: the runner tells that bound once a plan runs past its first
    round (ScanRun._paced_left_s) rather than guess the share here."""
    return nports * (udp_sends if probe.protocol == "udp" else 1) * pacing.mean_gap_s


def paced_shard(nhosts: int, nports: int, workers: int) -> int:
    """A paced plan's shard size: whole hosts (one worker owns each host's gap), the plan's
    hosts spread evenly over as few rounds of one shard per worker as SHARD_MAX allows, since
    every shard sends at once and each worker paces its own at rate / share."""
    most = SHARD_MAX // nports  # hosts in one shard
    rounds = min(PLAN_SHARDS, -(-nhosts // (workers * most)))
    shards = min(nhosts, workers * rounds)
    return min(most, -(-nhosts // shards)) * nports


@dataclass
class Feed:
    """Addresses behind one route still to be planned, with what to send them."""

    route: Route
    targets: Targets
    per_plan: int  # hosts cut off per group
    probes: Probes
    next_hop: bytes | None
    discovery: bool
    udp_sends: int  # probes per UDP port (ScanSpec.udp_sends)
    pacing: Pacing | None = None  # of its works (Work.pacing)
    position: int = 0  # addresses already cut off

    def cut(self, group: int) -> list[Work]:
        """The next chunk of hosts: one work per probe type, run together as `group`, each at its
        part of the rate. Parts follow the probes each sends (a UDP port's retries counted), so
        the works end together: deep's 104 UDP ports, each sent 1 + retries times (4 at the default
        3 retries), get 416 parts of the rate to the 65535 TCP ports' 65535."""
        hosts = self.upcoming()
        self.position += self.per_plan
        weights = [len(ports) * (self.udp_sends if probe.protocol == "udp" else 1) for probe, ports in self.probes]
        return [Work(probe, self.route, hosts, self.next_hop, ports, group, weight / sum(weights), self.discovery,
                     self.pacing, index)
                for index, ((probe, ports), weight) in enumerate(zip(self.probes, weights, strict=True))]

    def upcoming(self) -> Targets:
        """The hosts its next cut takes."""
        return self.targets.window(self.position, self.position + self.per_plan)

    @property
    def exhausted(self) -> bool:
        return self.position >= self.targets.count

    def paced_s(self) -> float:
        """How long its groups still to cut will take, one after another, if it is paced (0 if
        not: an ARP or ping feed's time is the rate's, seconds beside a paced one's hours)."""
        if self.pacing is None:
            return 0.0
        groups = -(-(self.targets.count - self.position) // self.per_plan)
        pacing = self.pacing
        return groups * max(paced_duration_s(probe, len(ports), pacing, self.udp_sends) for probe, ports in self.probes)
