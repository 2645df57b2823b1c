"""What a scan sends where: its targets routed into feeds of work, and what a finished group of
works leads to.

Each routed piece of the targets goes one of four ways:
- loopback: port scanned at once, at the IP layer;
- on-link: ARP on its interface first, then the hosts that answered are port scanned, each at
  its own MAC;
- behind a gateway in the neighbour table: a ping sweep through the gateway (or, without
  discovery, a port scan of every address), then the hosts that answered are port scanned;
- behind a gateway missing from it: the gateway is ARPed with its interface's on-link targets,
  and its pieces wait until then to take the way above.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from netscand.engine import plan as plans
from netscand.engine.probes import (
    PROBES,
    ProbeType,
    arp,
    icmp_echo,
    tcp_ack,
    tcp_syn,
    tcp_syn_kernel,
)
from netscand.engine.probes.base import NO_PORTS
from netscand.engine.shm import R_HOST, Result
from netscand.netinfo import NetInfo, NoRoute, Route
from netscand.scan.result import Host
from netscand.scan.spec import Pacing, ScanSpec
from netscand.scan.targets import Range, Targets
from netscand.scan.work import ZERO_MAC, Feed, Probes, Work

Waiting = tuple[int, int, Route]  # a routed range waiting for its gateway's MAC


@dataclass
class _Ways:
    """Routed pieces by the way they take: one feed per route and way, whatever number of pieces
    the routing table cut."""

    direct: dict[Route, list[Range]] = field(default_factory=dict)
    routed: dict[Route, list[Range]] = field(default_factory=dict)
    resolve: dict[int, tuple[Route, list[Range]]] = field(default_factory=dict)  # by interface

    def arp(self, route: Route, piece: Range) -> None:
        self.resolve.setdefault(route.ifindex, (route, []))[1].append(piece)


class Gateways:
    """Gateways missing from the neighbour table, with the routed ranges waiting behind each
    until its ARP answers."""

    def __init__(self) -> None:
        self.waiting: dict[int, list[Waiting]] = {}
        self.macs: dict[int, bytes] = {}

    def wait(self, gateway: int, start: int, end: int, route: Route) -> None:
        self.waiting.setdefault(gateway, []).append((start, end, route))

    def answered(self, r: Result, targets: Targets) -> bool:
        """Keep the ARP answer of a gateway resolved only to reach routed targets: True when
        that is what `r` is, which is then not itself a finding."""
        if r.kind == R_HOST and r.ip in self.waiting and r.ip not in targets:
            self.macs[r.ip] = r.mac
            return True
        return False

    def resolved(self, arped: Targets, hosts: dict[int, Host]) -> Iterator[tuple[int, bytes | None, list[Waiting]]]:
        """The gateways an ARP plan over `arped` has just resolved, each with its MAC (None: it
        did not answer) and the ranges that waited for it."""
        for gw in [gw for gw in self.waiting if gw in arped]:
            host = hosts.get(gw)
            yield gw, self.macs.get(gw) or (host.mac if host and host.up else None), self.waiting.pop(gw)


class Planner:
    def __init__(self, spec: ScanSpec, net: NetInfo, workers: int) -> None:
        self.spec = spec
        self.workers = workers  # the engine's, which a paced plan's size depends on
        self.feeds: deque[Feed] = deque()
        self.gateways = Gateways()
        self.planned = 0  # probes, counted when their targets are fed
        self.errors: list[str] = []
        self._route(net)

    def cut(self, group: int) -> list[Work]:
        """The next group of works, cut off the first feed (check `feeds` first)."""
        feed = self.feeds[0]
        works = feed.cut(group)
        if feed.exhausted:
            self.feeds.popleft()
        return works

    def finished(self, work: Work, up: list[int], hosts: dict[int, Host]) -> None:
        """Feed what `work`'s group leads to, now that it is over: `up` are the hosts it proved up."""
        if work.probe.resolves_neighbours:
            self._after_arp(work, up, hosts)
        elif work.discovery and up:
            self._port_scan(work.route, _singles(up), work.next_hop)

    def _route(self, net: NetInfo) -> None:
        try:
            pieces = net.route_ranges(self.spec.targets.ranges)
        except NoRoute as exc:
            self.errors.append(str(exc))
            return
        ways = _Ways()
        for start, end, route in pieces:
            self._sort(ways, start, end, route, net)
        for route, ranges in ways.direct.items():
            self._port_scan(route, _targets(ranges), ZERO_MAC)
        for route, ranges in ways.routed.items():
            assert route.gateway is not None
            self._sweep(route, _targets(ranges), net.neighbours[route.gateway])
        for route, ranges in ways.resolve.values():
            self._feed(route, _targets(ranges), plans.Plan.capacity(1), (_probing(arp.PROBE),), ZERO_MAC)

    def _sort(self, ways: _Ways, start: int, end: int, route: Route, net: NetInfo) -> None:
        if route.loopback:
            ways.direct.setdefault(route, []).append((start, end))
        elif route.gateway is None:
            ways.arp(route, (start, end))
        elif route.gateway in net.neighbours:
            ways.routed.setdefault(route, []).append((start, end))
        else:
            self.gateways.wait(route.gateway, start, end, route)
            ways.arp(route, (route.gateway, route.gateway))

    def _after_arp(self, work: Work, up: list[int], hosts: dict[int, Host]) -> None:
        if up:
            self._port_scan(work.route, _singles(up), None)
        routed: dict[tuple[Route, bytes], list[Range]] = {}
        for gw, mac, waiting in self.gateways.resolved(work.hosts, hosts):
            if mac is None:
                self.errors.append(f"gateway {ipaddress.IPv4Address(gw)} does not answer ARP")
                continue
            for start, end, route in waiting:
                routed.setdefault((route, mac), []).append((start, end))
        for (route, mac), ranges in routed.items():
            self._sweep(route, _targets(ranges), mac)

    def _sweep(self, route: Route, targets: Targets, next_hop: bytes) -> None:
        """Routed targets: pinged together, or port scanned when there is no ping to send."""
        probes = self._pings()
        if not probes:
            self._port_scan(route, targets, next_hop)
            return
        per_plan = plans.Plan.capacity(max(len(ports) for _, ports in probes))
        self._feed(route, targets, per_plan, probes, next_hop, discovery=True)

    def _pings(self) -> Probes:
        """(probe type, ports) of each configured discovery probe; none with skip_discovery."""
        d = self.spec.discovery
        if d is None:
            return ()
        pings = [_probing(icmp_echo.PROBE)] if d.icmp_echo else []
        for probe, ports in ((tcp_syn.PROBE, d.syn_ports), (tcp_ack.PROBE, d.ack_ports)):
            if ports:
                pings.append(_probing(probe, ports))
        return tuple(pings)

    def _port_scan(self, route: Route, targets: Targets, next_hop: bytes | None) -> None:
        """TCP, and UDP when the spec has UDP ports: the same hosts' plans, run side by side; a
        paced spec's one after the other (so a host sees one probe per gap in all), its TCP
        ports probed by the kernel-shaped SYN."""
        spec = self.spec
        tcp = (tcp_syn_kernel.PROBE if spec.pacing else tcp_syn.PROBE, spec.ports)
        udp = ((port_scan_of("udp"), spec.udp_ports),) if spec.udp_ports else ()
        per_plan = spec.hosts_per_plan(self.workers)
        if spec.pacing is None:
            self._feed(route, targets, per_plan, (tcp, *udp), next_hop)
            return
        for probes in ((tcp,), udp):
            self._feed(route, targets, per_plan, probes, next_hop, pacing=spec.pacing)

    def _feed(self, route: Route, targets: Targets, per_plan: int, probes: Probes, next_hop: bytes | None,
              discovery: bool = False, pacing: Pacing | None = None) -> None:
        """Queue `targets` for `probes`, planned (counted for progress) now, cut up later."""
        if targets.count and probes:
            self.planned += targets.count * sum(len(ports) for _, ports in probes)
            self.feeds.append(Feed(route, targets, per_plan, probes, next_hop, discovery, self.spec.udp_sends,
                                   pacing))


def port_scan_of(protocol: str) -> ProbeType:
    """The registered probe type whose answers are `protocol`'s port states."""
    return next(p for p in PROBES.values() if p.port_states and p.protocol == protocol)


def _probing(probe: ProbeType, ports: tuple[int, ...] = ()) -> tuple[ProbeType, tuple[int, ...]]:
    """A probe type with the ports its plans list (the pseudo-port of a type that probes none)."""
    return probe, ports if probe.ports else NO_PORTS


def _targets(ranges: list[Range]) -> Targets:
    return Targets(tuple(ranges))


def _singles(ips: list[int]) -> Targets:
    """Hosts found up, as targets (neighbours merge into ranges)."""
    return Targets(tuple((ip, ip) for ip in ips))
