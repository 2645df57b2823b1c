"""Device identification after the port scan: names and services, over ordinary sockets.

Reverse DNS, the UDP name queries (mDNS, NetBIOS, SNMP) and service detection run side by side,
each bounded by its own timeouts and concurrency; one failing costs its own answers only. Used
by the daemon's orchestrator and the one-shot CLI alike. A profile that must stay quiet (stealth)
gets reverse DNS only, which asks the resolver, never the targets.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable
import structlog

from netscand.profiling.hostname import reverse_dns
from netscand.profiling.names import query_names
from netscand.profiling.services import Detector
from netscand.scan.result import Host

log = structlog.get_logger()

# The name a device goes by, when it has several: DNS is what the network's administrators
# named it; mDNS and NetBIOS are what it calls itself; SNMP's sysName is often left at a default.
NAME_PREFERENCE = ("dns", "mdns", "netbios", "snmp")


async def _part(what: str, work: Awaitable[dict]) -> dict:
    try:
        return await work
    except Exception:
        log.exception("identify.failed", part=what)
        return {}


async def identify(hosts: list[Host], detector: Detector, ask_targets: bool) -> None:
    """Fill in each host's names and best hostname; `ask_targets`: also query the hosts
    themselves (UDP name queries, service detection on the open ports)."""
    by_ip = {str(ipaddress.IPv4Address(h.ip)): h for h in hosts}
    ips = list(by_ip)
    targets = [(ip, port) for ip, h in by_ip.items() for port in sorted(h.open)] if ask_targets else []
    dns, names, found = await asyncio.gather(
        _part("reverse_dns", reverse_dns(ips)),
        _part("names", query_names(ips if ask_targets else [])),
        _part("services", detector.detect_all(targets)))
    for ip, name in dns.items():
        by_ip[ip].names["dns"] = name
    for ip, answer in names.items():
        host = by_ip[ip]
        host.names.update(answer.names)
        host.evidence.extend(answer.evidence)
        host.udp.update(answer.udp)
    for (ip, port), info in found.items():
        if info is not None:
            by_ip[ip].services[port] = info
    for host in hosts:
        host.hostname = next((host.names[s] for s in NAME_PREFERENCE if s in host.names), None)
