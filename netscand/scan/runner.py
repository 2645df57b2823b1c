"""One scan's life in the control process: route the targets, resolve on-link hosts by ARP,
then SYN-scan every reachable host, feeding the engine one plan per slot as slots free up.

Targets stay address ranges until a plan is written: each route's addresses wait in a feed,
cut one group of works at a time as the queue empties, and a work's host tuple is built only
for its plan (which bounds it). So a /8 costs what its ranges do, and memory grows with the
hosts that answer, never with the addresses asked for.

It never blocks: the caller (the one-shot command's loop, or the daemon's event loop) calls
dispatcher.poll() when a result ring wakes it, then step() here.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections import deque
from dataclasses import dataclass
from functools import partial

from netscand.engine import plan as plans
from netscand.engine.probes import ProbeType, arp, icmp_echo, tcp_ack, tcp_syn
from netscand.engine.shm import R_HOST, R_PORT, R_TALLY, Result
from netscand.netinfo import NetInfo, NoRoute, Route
from netscand.scan.dispatch import Dispatcher, Submitted, shard_size
from netscand.scan.result import ScanResult
from netscand.scan.targets import Range, Targets

SPORT_BASE = 61440  # above Linux's default ephemeral range, so no local socket owns a reply
ZERO_MAC = b"\0" * 6

Probes = tuple[tuple[ProbeType, tuple[int, ...]], ...]  # (probe type, ports) of works that run together


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


@dataclass(frozen=True)
class _Work:
    probe: ProbeType
    route: Route
    hosts: Targets  # expanded only when its plan is written
    next_hop: bytes | None  # the MAC every frame goes to; None: each on-link host's own (its ARP answer)
    ports: tuple[int, ...]
    group: int  # works of one group run together, sharing the rate
    share: int  # how many works the group has
    discovery: bool = False  # its answers only prove hosts up

    @property
    def port_scan(self) -> bool:
        """Its answers are the scan's port states (not a discovery ping's)."""
        return self.probe.port_states and not self.discovery


@dataclass
class _Feed:
    """Addresses behind one route still to be planned, with what to send them."""

    route: Route
    targets: Targets
    per_plan: int  # hosts cut off per group
    probes: Probes
    next_hop: bytes | None
    discovery: bool
    position: int = 0  # addresses already cut off

    def take(self) -> Targets:
        chunk = self.targets.window(self.position, self.position + self.per_plan)
        self.position += self.per_plan
        return chunk

    @property
    def exhausted(self) -> bool:
        return self.position >= self.targets.count


class ScanRun:
    def __init__(self, spec: ScanSpec, dispatcher: Dispatcher, net: NetInfo | None = None) -> None:
        self.spec = spec
        self.dispatcher = dispatcher
        self.result = ScanResult()
        self.feeds: deque[_Feed] = deque()
        self.queue: deque[_Work] = deque()  # the group being started, cut from feeds[0]
        self.running: list[tuple[Submitted, _Work, float]] = []  # with its start time
        self.waiting_arp: dict[int, list[tuple[int, int, Route]]] = {}  # gateway -> its ranges
        self.gateway_macs: dict[int, bytes] = {}
        self.groups = 0
        self.group_left: dict[int, int] = {}  # group -> works not finished
        self.found: dict[int, list[int]] = {}  # group -> hosts its ARP or ping answers proved up
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
        # One feed per route and way, whatever number of pieces the routing table cut.
        direct: dict[Route, list[Range]] = {}
        routed: dict[Route, list[Range]] = {}
        resolve: dict[int, tuple[Route, list[Range]]] = {}
        for start, end, route in pieces:
            if route.loopback:
                direct.setdefault(route, []).append((start, end))
            elif route.gateway is None:
                resolve.setdefault(route.ifindex, (route, []))[1].append((start, end))
            elif route.gateway in net.neighbours:
                routed.setdefault(route, []).append((start, end))
            else:
                self.waiting_arp.setdefault(route.gateway, []).append((start, end, route))
                resolve.setdefault(route.ifindex, (route, []))[1].append((route.gateway, route.gateway))
        for route, ranges in direct.items():
            self._queue_syn(route, Targets(tuple(ranges)), ZERO_MAC)
        for route, ranges in routed.items():
            assert route.gateway is not None
            self._queue_routed(route, Targets(tuple(ranges)), net.neighbours[route.gateway])
        for route, ranges in resolve.values():
            self._feed(route, Targets(tuple(ranges)), plans.Plan.capacity(1), ((arp.PROBE, (0,)),), ZERO_MAC)

    def _queue_routed(self, route: Route, targets: Targets, next_hop: bytes) -> None:
        probes = self._pings()
        if not probes:
            self._queue_syn(route, targets, next_hop)
            return
        per_plan = plans.Plan.capacity(max(len(ports) for _, ports in probes))
        self._feed(route, targets, per_plan, probes, next_hop, discovery=True)

    def _pings(self) -> Probes:
        """(probe type, ports) of each configured discovery probe; none with skip_discovery."""
        d = self.spec.discovery
        if d is None:
            return ()
        candidates = ((icmp_echo.PROBE, (0,) if d.icmp_echo else ()),
                      (tcp_syn.PROBE, d.syn_ports), (tcp_ack.PROBE, d.ack_ports))
        return tuple((probe, ports) for probe, ports in candidates if ports)

    def _queue_syn(self, route: Route, targets: Targets, next_hop: bytes | None) -> None:
        self._feed(route, targets, self.spec.hosts_per_plan(), ((tcp_syn.PROBE, self.spec.ports),), next_hop)

    def _feed(self, route: Route, targets: Targets, per_plan: int, probes: Probes, next_hop: bytes | None,
              discovery: bool = False) -> None:
        """Queue `targets` for `probes`, planned (counted for progress) now, cut up later."""
        if targets.count:
            self.planned += targets.count * sum(len(ports) for _, ports in probes)
            self.feeds.append(_Feed(route, targets, per_plan, probes, next_hop, discovery))

    def _next_group(self) -> None:
        """Cut the next chunk of hosts off the first feed: one work per probe type, run together,
        each at its share of the rate."""
        feed = self.feeds[0]
        hosts = feed.take()
        if feed.exhausted:
            self.feeds.popleft()
        self.groups += 1
        self.group_left[self.groups] = len(feed.probes)
        self.queue.extend(_Work(probe, feed.route, hosts, feed.next_hop, ports, self.groups, len(feed.probes),
                                feed.discovery) for probe, ports in feed.probes)

    def _plan(self, work: _Work, slot: int, gen: int) -> plans.Plan:
        probe = work.probe
        hosts = tuple(work.hosts.addresses())
        if work.next_hop is None:
            known = self.result.hosts
            macs = tuple((h.mac if (h := known.get(ip)) else None) or ZERO_MAC for ip in hosts)
        else:
            macs = (work.next_hop,) * len(hosts)
        if work.port_scan:
            self.result.probed(hosts, len(work.ports))
        t = probe.timeout_ms or self.spec.timeout_ms  # fixed; None adapts
        size = len(hosts) * len(work.ports)
        workers = self.dispatcher.shared.workers
        shard = shard_size(size, workers)
        return plans.Plan(
            gen=gen, kind=probe.kind, slot=slot, share=min(workers, -(-size // shard)),
            retries=self.spec.retries if probe.retries is None else probe.retries, key=os.urandom(16),
            ifindex=work.route.ifindex, src_ip=work.route.src_ip, src_mac=work.route.src_mac,
            sport_base=SPORT_BASE, rate=self.spec.rate / work.share,
            timeout_init_ms=t or plans.TIMEOUT_INIT_MS, timeout_min_ms=t or plans.TIMEOUT_MIN_MS,
            timeout_max_ms=t or plans.TIMEOUT_MAX_MS,
            shard_size=shard, hosts=hosts, macs=macs, ports=work.ports,
            flags=plans.FLAG_LOOPBACK if work.route.loopback else 0)

    # -- running ---------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return not self.queue and not self.running and not self.feeds

    def step(self) -> None:
        """Retire finished or timed-out plans, then start the next group. One group runs at a
        time: the scan's rate is split among its plans, which the workers send side by side
        (and beside other scans' plans), and every worker shares each plan."""
        now = time.monotonic()
        for item in list(self.running):
            sub, work, started = item
            timed_out = (self.spec.host_timeout_s is not None and work.port_scan
                         and now - started > self.spec.host_timeout_s)
            if not (sub.finished or timed_out):
                continue
            self.running.remove(item)
            self.done_probes += sub.plan.size
            if timed_out and not sub.finished:
                self.dispatcher.cancel(sub)
                self.result.timed_out(sub.plan.hosts)
            self._retire(work)
        while not self.cancelled and self.dispatcher.free_slot is not None:
            if not self.queue:
                if self.running or not self.feeds:
                    break
                self._next_group()
            work = self.queue.popleft()
            callback = partial(self._on_discovery if work.discovery else self._on_result, work)
            sub = self.dispatcher.submit(partial(self._plan, work), callback, self._on_failure)
            self.running.append((sub, work, now))

    def _retire(self, work: _Work) -> None:
        self.group_left[work.group] -= 1
        if self.group_left[work.group]:
            return
        del self.group_left[work.group]
        up = sorted(self.found.pop(work.group, ()))
        if work.probe.resolves_neighbours:
            self._after_arp(work, up)
        elif work.discovery and up:
            self._queue_syn(work.route, _singles(up), work.next_hop)

    def _on_discovery(self, work: _Work, r: Result) -> None:
        # Any answer to a ping proves the host up; what it says about port 443 or 80 is not a
        # port scan result.
        if r.kind in (R_HOST, R_PORT, R_TALLY) and self.result.mark_up(r.ip):
            self.found.setdefault(work.group, []).append(r.ip)

    def _on_result(self, work: _Work, r: Result) -> None:
        # A gateway resolved only to reach routed targets is not itself a finding.
        if r.kind == R_HOST and r.ip in self.waiting_arp and not self._is_target(r.ip):
            self.gateway_macs[r.ip] = r.mac
            return
        states = work.probe.port_states
        if self.result.add(r, len(work.ports) if states else 0) and not states:
            self.found.setdefault(work.group, []).append(r.ip)

    def _after_arp(self, work: _Work, up: list[int]) -> None:
        if up:
            self._queue_syn(work.route, _singles(up), None)
        routed: dict[tuple[Route, bytes], list[Range]] = {}
        for gw in [gw for gw in self.waiting_arp if gw in work.hosts]:
            pieces = self.waiting_arp.pop(gw)
            host = self.result.hosts.get(gw)
            mac = self.gateway_macs.get(gw) or (host.mac if host and host.up else None)
            if mac is None:
                self.errors.append(f"gateway {ipaddress.IPv4Address(gw)} does not answer ARP")
                continue
            for start, end, route in pieces:
                routed.setdefault((route, mac), []).append((start, end))
        for (route, mac), ranges in routed.items():
            self._queue_routed(route, Targets(tuple(ranges)), mac)

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
        self.feeds.clear()
        for sub, _, _ in self.running:
            self.dispatcher.cancel(sub)
        self.running.clear()

    def progress(self) -> tuple[int, int]:
        """(probes done, probes planned) counting finished shards of running plans."""
        shards_done = sum(len(s.done) * s.plan.shard_size for s, _, _ in self.running)
        return min(self.done_probes + shards_done, self.planned), self.planned


def _singles(ips: list[int]) -> Targets:
    """Hosts found up, as targets (neighbours merge into ranges)."""
    return Targets(tuple((ip, ip) for ip in ips))
