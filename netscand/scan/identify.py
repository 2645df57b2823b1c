"""Device identification after the port scan: names and services, over ordinary sockets.

Reverse DNS, the UDP name queries (mDNS, NetBIOS, SNMP), service detection on the open TCP ports
and UDP service detection run side by side, each bounded by its own timeouts and concurrency; one
failing costs its own answers only. UDP detection asks the UDP ports the scan found open, and the
silent (open|filtered) ones that have a protocol probe, as nmap -sV does: a service that ignores
an empty datagram still answers its own protocol. Ports the name queries ask are theirs. Used
by the daemon's orchestrator and the one-shot CLI alike. A profile that must stay quiet (stealth)
gets reverse DNS only, which asks the resolver, never the targets.

Two deadlines bound the step, whatever the hosts do. Each host's service detection ends after
its profile's per-host budget (docs/api.md: quick 30 s, normal 120 s, deep 600 s), clamped to
[HOST_DEADLINE_MIN_S, HOST_DEADLINE_MAX_S]; the whole step ends after SCAN_DEADLINE_HOSTS such
budgets. What is unfinished then is left out (no service, no name): the scan still completes.
A host flagged as a tarpit (it answered on every port) gets no service detection at all; its
name queries still run, a few datagrams at a bounded cost.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Collection, Iterator

import structlog

from netscand.engine.probes.payloads import PAYLOAD_PORTS
from netscand.profiling.hostname import reverse_dns
from netscand.profiling.names import QUERIES, HostNames, query_names
from netscand.profiling.services import Detector
from netscand.profiling.services.detector import HOST_DEADLINE_S, Results
from netscand.profiling.udp import PROBE_PORTS, UdpResults, detect_udp
from netscand.profiling.udp.detect import Target
from netscand.scan.result import Host, PortStates

log = structlog.get_logger()

# The name a device goes by, when it has several: DNS is what the network's administrators
# named it; mDNS and NetBIOS are what it calls itself; SNMP's sysName is often left at a default.
NAME_PREFERENCE = ("dns", "mdns", "netbios", "snmp")
# A port's detection takes up to 4 connections of at most 12 s each (detector.py): a budget under
# 30 s (custom's timeout_ms x retries is sized for probe replies) would not let one slow port
# finish. Above 600 s (deep's) a host is not worth more.
HOST_DEADLINE_MIN_S = 30.0
HOST_DEADLINE_MAX_S = 600.0
# The whole step: as long as four slow hosts one after the other. Hosts are identified side by
# side (64 ports at once), so an ordinary /24 needs a small part of one budget (the lab's 8 hosts:
# 8 s, bench/README.md); this bounds a network of tarpits and drips to 8 min (normal), 40 min (deep).
SCAN_DEADLINE_HOSTS = 4
NAME_QUERY_PORTS = frozenset(query.port for query in QUERIES)


def host_deadline(host_timeout_s: float | None) -> float:
    """Seconds one host's service detection may take, from the scan's per-host budget."""
    budget = HOST_DEADLINE_S if host_timeout_s is None else host_timeout_s
    return min(max(budget, HOST_DEADLINE_MIN_S), HOST_DEADLINE_MAX_S)


async def _part(what: str, work: Awaitable[object]) -> None:
    try:
        await work
    except Exception:
        log.exception("identify.failed", part=what)


async def identify(hosts: list[Host], detector: Detector, ask_targets: bool,
                   host_timeout_s: float | None = None, udp_ports: Collection[int] = ()) -> None:
    """Fill in each host's names and best hostname; `ask_targets`: also query the hosts
    themselves (UDP name queries, service detection on the open ports). `host_timeout_s`: the
    scan's per-host budget (ScanSpec.host_timeout_s), which sets the deadlines above.
    `udp_ports`: the UDP ports the scan probed (ScanSpec.udp_ports)."""
    per_host = host_deadline(host_timeout_s)
    by_ip = {str(ipaddress.IPv4Address(h.ip)): h for h in hosts}
    ips = list(by_ip)
    targets = [(ip, port) for ip, h in by_ip.items() if not h.tarpit for port in sorted(h.tcp.open)] if ask_targets else []
    dns: dict[str, str] = {}
    names: dict[str, HostNames] = {}
    found: Results = {}
    udp_targets = list(_udp_targets(by_ip, frozenset(udp_ports))) if ask_targets else []
    udp_found: UdpResults = {}
    try:
        async with asyncio.timeout(SCAN_DEADLINE_HOSTS * per_host):
            await asyncio.gather(
                _part("reverse_dns", reverse_dns(ips, found=dns)),
                _part("names", query_names(ips if ask_targets else [], found=names)),
                _part("services", detector.detect_all(targets, host_deadline=per_host, found=found)),
                _part("udp_services", detect_udp(udp_targets, host_deadline=per_host, recognised=PAYLOAD_PORTS,
                                                 found=udp_found)))
    except TimeoutError:
        log.warning("identify.deadline", seconds=SCAN_DEADLINE_HOSTS * per_host, hosts=len(hosts),
                    ports=len(targets), detected=len(found))
    _apply(by_ip, dns, names, found)
    _apply_udp(by_ip, names, udp_found, frozenset(udp_ports))


def _udp_targets(by_ip: dict[str, Host], probed: frozenset[int]) -> Iterator[Target]:
    """The UDP ports worth a protocol query: open ones, and silent ones with a probe of their own.

    Silent ports are listed only when a host has few (result.LIST_LIMIT); past that (the ICMP
    rate limit silences most closed ports) the probed ports it did not list as closed or
    filtered are taken instead.
    """
    for ip, host in by_ip.items():
        states = host.scans.get("udp")
        if states is None or states.tarpit or host.tarpit:
            continue
        for port in sorted(states.open.keys() - NAME_QUERY_PORTS):
            yield ip, port, True
        for port in sorted(_silent(states, probed) & (PROBE_PORTS - states.open.keys() - NAME_QUERY_PORTS)):
            yield ip, port, False


def _silent(states: PortStates, probed: frozenset[int]) -> set[int]:
    if len(states.silent) >= states.silent_count:
        return set(states.silent)
    return set(probed - states.closed - states.unreachable)


def _apply(by_ip: dict[str, Host], dns: dict[str, str], names: dict[str, HostNames], found: Results) -> None:
    for ip, name in dns.items():
        by_ip[ip].names["dns"] = name
    for ip, answer in names.items():
        host = by_ip[ip]
        host.names.update(answer.names)
        host.evidence.extend(answer.evidence)
    for (ip, port), info in found.items():
        if info is not None:
            by_ip[ip].services[port] = info
    for host in by_ip.values():
        host.hostname = next((host.names[s] for s in NAME_PREFERENCE if s in host.names), None)


def _apply_udp(by_ip: dict[str, Host], names: dict[str, HostNames], found: UdpResults,
               probed: frozenset[int]) -> None:
    """The UDP ports that answered a name query or UDP detection. One the scan probed moves from
    its silent ports to its open ones, or the device would count it twice."""
    answers = [(ip, port, info) for ip, answer in names.items() for port, info in answer.udp.items()]
    answers += [(ip, port, info) for (ip, port), info in found.items()]
    for ip, port, info in answers:
        host = by_ip[ip]
        host.udp[port] = info
        states = host.scans.get("udp")
        if states is not None and port in probed:
            states.answered(port)
