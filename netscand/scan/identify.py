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

A host whose UDP results show the ICMP rate limit (PortStates.icmp_limited: some ports closed,
more silent) has its silent ports asked again at the pace the limit allows (profiling/confirm.py),
with the datagram the scan sent them: port unreachable makes one closed, another unreachable
filtered, an answer open; what stays silent stays open|filtered. Its silent ports are asked for
their services only after that, so detection spends none of the host's ICMP tokens meanwhile.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Collection, Iterable, Iterator

import structlog

from netscand.engine.probes.payloads import PAYLOAD_PORTS, payload
from netscand.profiling.confirm import Answers, confirm
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
    udp = _Udp(by_ip, frozenset(udp_ports), per_host) if ask_targets else None
    try:
        async with asyncio.timeout(SCAN_DEADLINE_HOSTS * per_host):
            await asyncio.gather(
                _part("reverse_dns", reverse_dns(ips, found=dns)),
                _part("names", query_names(ips if ask_targets else [], found=names)),
                _part("services", detector.detect_all(targets, host_deadline=per_host, found=found)),
                _part("udp_services", udp.run() if udp else asyncio.sleep(0)))
    except TimeoutError:
        log.warning("identify.deadline", seconds=SCAN_DEADLINE_HOSTS * per_host, hosts=len(hosts),
                    ports=len(targets), detected=len(found))
    _apply(by_ip, dns, names, found)
    if udp:
        udp.apply_confirmed()
    _apply_udp(by_ip, names, udp.found if udp else {}, frozenset(udp_ports))


class _Udp:
    """UDP service detection, and the confirmation of rate-limited hosts' silent ports, whose
    service detection waits for it (see the module's comment)."""

    def __init__(self, by_ip: dict[str, Host], probed: frozenset[int], per_host: float) -> None:
        self.by_ip, self.probed, self.per_host = by_ip, probed, per_host
        self.limited = {ip: h for ip, h in by_ip.items() if "udp" in h.scans and _confirmable(h.scans["udp"])}
        self.asked = {ip: sorted(h.states("udp").silent_ports(probed)) for ip, h in self.limited.items()}
        self.found: UdpResults = {}
        self.confirmed: Answers = {}

    async def run(self) -> None:
        first = [t for t in _udp_targets(self.by_ip, self.probed) if t[2] or t[0] not in self.limited]
        asks = {ip: [(port, payload(port).data) for port in ports] for ip, ports in self.asked.items()}
        await asyncio.gather(self._detect(first),
                             confirm(asks, host_deadline=self.per_host, found=self.confirmed))
        self.apply_confirmed()
        asked = {(ip, port) for ip, ports in self.asked.items() for port in ports}
        await self._detect(t for t in _udp_targets(self.limited, self.probed) if (t[0], t[1]) in asked)

    async def _detect(self, targets: Iterable[Target]) -> None:
        await detect_udp(targets, host_deadline=self.per_host, recognised=PAYLOAD_PORTS, found=self.found)

    def apply_confirmed(self) -> None:
        """Each confirmed port's new state; idempotent (PortStates.confirm, answered)."""
        for (ip, port), state in self.confirmed.items():
            states = self.by_ip[ip].states("udp")
            if state == "open":
                states.answered(port)
            else:
                states.confirm(port, state)


def _confirmable(states: PortStates) -> bool:
    return states.icmp_limited and not states.tarpit


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
        for port in sorted(states.silent_ports(probed) & (PROBE_PORTS - states.open.keys() - NAME_QUERY_PORTS)):
            yield ip, port, False


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
