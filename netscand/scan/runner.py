"""One scan's life in the control process: route the targets, resolve on-link hosts by ARP,
then SYN-scan every reachable host, feeding the engine one plan per slot as slots free up.

It never blocks: the caller (the one-shot command's loop, or the daemon's event loop) calls
dispatcher.poll() when a result ring wakes it, then step() here.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from netscand.engine import plan as plans
from netscand.engine.shm import R_HOST, R_PORT, R_TALLY, Result
from netscand.netinfo import NetInfo, NoRoute, Route
from netscand.scan.dispatch import Dispatcher, Submitted, shard_size
from netscand.scan.result import ScanResult
from netscand.scan.targets import Targets

SPORT_BASE = 61440  # above Linux's default ephemeral range, so no local socket owns a reply
ARP_RETRIES = 2
ARP_TIMEOUT_MS = 500
ZERO_MAC = b"\0" * 6


@dataclass(frozen=True)
class Discovery:
    """Host discovery for routed targets (on-link ones are found by ARP), as nmap's default
    -PE -PS443 -PA80: a host is up if anything answers."""

    icmp_echo: bool = True
    syn_ports: tuple[int, ...] = (443,)
    ack_ports: tuple[int, ...] = (80,)


@dataclass(frozen=True)
class ScanSpec:
    targets: Targets
    ports: tuple[int, ...]
    rate: float
    retries: int
    timeout_ms: int | None = None  # fixed per-probe timeout; None adapts to measured RTT
    host_timeout_s: float | None = None  # a host still unfinished after this is reported timed out
    max_hosts: int | None = None  # hosts scanned at once (one plan); None: sized from the above
    discovery: Discovery | None = Discovery()  # None: probe every routed target (nmap's -Pn)
    profiling: bool = False  # vendor and OS guess for the devices found
    detect_services: bool = False  # connect to open ports to name service, product and version

    def hosts_per_plan(self) -> int:
        """Hosts of one plan are scanned together, so a plan must fit the per-host budget at the
        scan's rate (with half the budget left for retries and slow replies)."""
        limit = plans.Plan.capacity(len(self.ports))
        if self.max_hosts:
            limit = min(limit, self.max_hosts)
        if self.host_timeout_s:
            limit = min(limit, int(self.host_timeout_s * self.rate / 2 / len(self.ports)))
        return max(1, limit)


@dataclass
class _Work:
    kind: int
    route: Route
    hosts: tuple[int, ...]
    macs: tuple[bytes, ...]
    ports: tuple[int, ...]
    group: int = 0  # works of one group run together, sharing the rate (set when queued)
    share: int = 1  # how many works the group has
    discovery: bool = False  # its answers only prove hosts up


class ScanRun:
    def __init__(self, spec: ScanSpec, dispatcher: Dispatcher, net: NetInfo | None = None) -> None:
        self.spec = spec
        self.dispatcher = dispatcher
        self.result = ScanResult()
        self.queue: deque[_Work] = deque()
        self.running: list[tuple[Submitted, _Work, float]] = []  # with its start time
        self.waiting_arp: dict[int, list[tuple[int, int, Route]]] = {}  # gateway -> its ranges
        self.gateway_macs: dict[int, bytes] = {}
        self.groups = 0
        self.group_left: dict[int, int] = {}  # group -> works not finished
        self.planned = 0
        self.done_probes = 0
        self.errors: list[str] = []
        self.cancelled = False
        self.failure: str | None = None  # why the engine failed one of its plans, which ends the scan
        self._route(net or NetInfo())

    # -- planning --------------------------------------------------------------------------
    def _route(self, net: NetInfo) -> None:
        try:
            pieces = net.route_ranges(self.spec.targets.ranges)
        except NoRoute as exc:
            self.errors.append(str(exc))
            return
        arp: dict[int, tuple[Route, list[int]]] = {}
        for start, end, route in pieces:
            if route.loopback:
                self._queue_syn(route, range(start, end + 1), None)
            elif route.gateway is None:
                arp.setdefault(route.ifindex, (route, []))[1].extend(range(start, end + 1))
            elif route.gateway in net.neighbours:
                self._queue_routed(route, range(start, end + 1), net.neighbours[route.gateway])
            else:
                self.waiting_arp.setdefault(route.gateway, []).append((start, end, route))
                entry = arp.setdefault(route.ifindex, (route, []))[1]
                if route.gateway not in entry:
                    entry.append(route.gateway)
        for route, hosts in arp.values():
            for chunk in _chunks(hosts, plans.Plan.capacity(1)):
                self._enqueue([_Work(plans.KIND_ARP, route, chunk, (ZERO_MAC,) * len(chunk), (0,))])

    def _queue_routed(self, route: Route, ips: Sequence[int], next_hop: bytes) -> None:
        probes = self._pings()
        if not probes:
            self._queue_syn(route, ips, next_hop)
            return
        for chunk in _chunks(ips, plans.Plan.capacity(max(len(p) for _, p in probes))):
            macs = (next_hop,) * len(chunk)
            self._enqueue([_Work(kind, route, chunk, macs, ports, discovery=True) for kind, ports in probes])

    def _pings(self) -> list[tuple[int, tuple[int, ...]]]:
        """(probe kind, ports) of each configured discovery probe; none with skip_discovery."""
        d = self.spec.discovery
        if d is None:
            return []
        candidates = ((plans.KIND_ICMP_ECHO, (0,) if d.icmp_echo else ()),
                      (plans.KIND_TCP_SYN, d.syn_ports), (plans.KIND_TCP_ACK, d.ack_ports))
        return [(kind, ports) for kind, ports in candidates if ports]

    def _queue_syn(self, route: Route, ips: Sequence[int], next_hop: bytes | None) -> None:
        """next_hop: the MAC every frame goes to; None for on-link hosts, each its own ARP answer."""
        for chunk in _chunks(ips, self.spec.hosts_per_plan()):
            if route.loopback:
                macs = (ZERO_MAC,) * len(chunk)
            elif next_hop is None:
                macs = tuple(self.result.hosts[ip].mac or ZERO_MAC for ip in chunk)
            else:
                macs = (next_hop,) * len(chunk)
            self._enqueue([_Work(plans.KIND_TCP_SYN, route, chunk, macs, self.spec.ports)])

    def _enqueue(self, group: list[_Work]) -> None:
        """Queue works that run together (a discovery's probe types), each at its share of the rate."""
        self.groups += 1
        self.group_left[self.groups] = len(group)
        for work in group:
            work.group, work.share = self.groups, len(group)
            if work.kind == plans.KIND_TCP_SYN and not work.discovery:
                self.result.probed(work.hosts, len(work.ports))
            self.planned += len(work.hosts) * len(work.ports)
            self.queue.append(work)

    def _plan(self, work: _Work, slot: int, gen: int) -> plans.Plan:
        arp = work.kind == plans.KIND_ARP
        t = self.spec.timeout_ms
        size = len(work.hosts) * len(work.ports)
        workers = self.dispatcher.shared.workers
        shard = shard_size(size, workers)
        return plans.Plan(
            gen=gen, kind=work.kind, slot=slot, share=min(workers, -(-size // shard)),
            retries=ARP_RETRIES if arp else self.spec.retries, key=os.urandom(16),
            ifindex=work.route.ifindex, src_ip=work.route.src_ip, src_mac=work.route.src_mac,
            sport_base=SPORT_BASE, rate=self.spec.rate / work.share,
            timeout_init_ms=ARP_TIMEOUT_MS if arp else (t or 1000),
            timeout_min_ms=ARP_TIMEOUT_MS if arp else (t or 100),
            timeout_max_ms=ARP_TIMEOUT_MS if arp else (t or 3000),
            shard_size=shard, hosts=work.hosts, macs=work.macs, ports=work.ports,
            flags=plans.FLAG_LOOPBACK if work.route.loopback else 0)

    # -- running ---------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return not self.queue and not self.running

    def step(self) -> None:
        """Retire finished or timed-out plans, then start the next group. One group runs at a
        time: the scan's rate is shared by its plans, and every worker shares each plan."""
        now = time.monotonic()
        for item in list(self.running):
            sub, work, started = item
            timed_out = (self.spec.host_timeout_s is not None and work.kind == plans.KIND_TCP_SYN
                         and not work.discovery and now - started > self.spec.host_timeout_s)
            if not (sub.finished or timed_out):
                continue
            self.running.remove(item)
            self.done_probes += sub.plan.size
            if timed_out and not sub.finished:
                self.dispatcher.cancel(sub)
                for ip in work.hosts:
                    self.result.host(ip).timed_out = True
            self.group_left[work.group] -= 1
            if work.kind == plans.KIND_ARP:
                self._after_arp(work)
            elif work.discovery and not self.group_left[work.group]:
                self._after_discovery(work)
        while self.queue and not self.cancelled and self.dispatcher.free_slot is not None:
            work = self.queue[0]
            if self.running and self.running[0][1].group != work.group:
                break
            self.queue.popleft()
            callback = self._on_discovery if work.discovery else self._on_result
            sub = self.dispatcher.submit(lambda s, g, w=work: self._plan(w, s, g), callback, self._on_failure)
            self.running.append((sub, work, now))

    def _on_discovery(self, r: Result) -> None:
        # Any answer to a ping proves the host up; what it says about port 443 or 80 is not a
        # port scan result.
        if r.kind in (R_HOST, R_PORT, R_TALLY):
            self.result.mark_up(r.ip)

    def _after_discovery(self, work: _Work) -> None:
        up = [ip for ip in work.hosts if ip in self.result.hosts and self.result.hosts[ip].up]
        if up:
            self._queue_syn(work.route, up, work.macs[0])

    def _on_result(self, r: Result) -> None:
        # A gateway resolved only to reach routed targets is not itself a finding.
        if r.kind == R_HOST and r.ip in self.waiting_arp and not self._is_target(r.ip):
            self.gateway_macs[r.ip] = r.mac
        else:
            self.result.add(r)

    def _after_arp(self, work: _Work) -> None:
        up = [ip for ip in work.hosts if ip in self.result.hosts and self.result.hosts[ip].up]
        if up:
            self._queue_syn(work.route, up, None)
        for gw in [ip for ip in work.hosts if ip in self.waiting_arp]:
            mac = self.gateway_macs.get(gw) or (self.result.hosts[gw].mac if gw in up else None)
            pieces = self.waiting_arp.pop(gw)
            if mac is None:
                self.errors.append(f"gateway {ipaddress.IPv4Address(gw)} does not answer ARP")
                continue
            for start, end, route in pieces:
                self._queue_routed(route, range(start, end + 1), mac)

    def _is_target(self, ip: int) -> bool:
        return ip in self.spec.targets

    def _on_failure(self, reason: str) -> None:
        # One plan lost is a result with holes nobody can see: the whole scan fails instead.
        if self.failure is None:
            self.failure = reason
            self.cancel()

    def cancel(self) -> None:
        self.cancelled = True
        self.queue.clear()
        for sub, _, _ in self.running:
            self.dispatcher.cancel(sub)
        self.running.clear()

    def progress(self) -> tuple[int, int]:
        """(probes done, probes planned) counting finished shards of running plans."""
        partial = sum(len(s.done) * s.plan.shard_size for s, _, _ in self.running)
        return min(self.done_probes + partial, self.planned), self.planned


def _chunks(items: Sequence[int], size: int) -> Iterator[tuple[int, ...]]:
    for i in range(0, len(items), size):
        yield tuple(items[i : i + size])
