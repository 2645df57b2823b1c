"""Host names and identities asked of each host over UDP: mDNS, NetBIOS and SNMP.

`query_names(ips)` sends each host one query per protocol (modules `mdns`, `netbios`, `snmp`; see
`base.NameQuery`), from a connected UDP socket of its own, so only that host's port can answer
it. A query waits `timeout` for an answer, is sent again up to `retries` times, and ends at
once when the host says the port is closed (ICMP port unreachable). Nothing here blocks the
event loop or raises for what the network does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from netscand.profiling.datagram import exchange, new_ident
from netscand.profiling.names import mdns, netbios, snmp
from netscand.profiling.names.base import NameQuery, Reply
from netscand.profiling.services.base import ServiceInfo

QUERIES: tuple[NameQuery, ...] = (mdns, netbios, snmp)

__all__ = ["QUERIES", "HostNames", "ask", "query_names"]


@dataclass
class HostNames:
    names: dict[str, str] = field(default_factory=dict)  # source ("mdns", "netbios", "snmp") -> name
    evidence: list[str] = field(default_factory=list)  # text that may name the OS (SNMP sysDescr)
    udp: dict[int, ServiceInfo] = field(default_factory=dict)  # port -> what answered there


async def query_names(
    ips: list[str], timeout: float = 1.0, retries: int = 1, concurrency: int = 64,
    found: dict[str, HostNames] | None = None,
) -> dict[str, HostNames]:
    """What each IPv4 address told about itself; only hosts where some protocol answered appear.

    At most `concurrency` queries are in flight; one query takes at most timeout * (retries + 1).
    `found` is filled as answers come, so a caller that stops waiting keeps what came.
    """
    limit = asyncio.Semaphore(concurrency)
    found = {} if found is None else found

    async def one(ip: str, query: NameQuery) -> None:
        async with limit:
            reply = await ask(ip, query, timeout, retries)
        if reply is None:
            return
        host = found.setdefault(ip, HostNames())
        host.udp[query.port] = reply.service
        if reply.name:
            host.names[query.source] = reply.name
        if reply.evidence:
            host.evidence.append(reply.evidence)

    await asyncio.gather(*(one(ip, q) for ip in dict.fromkeys(ips) for q in QUERIES))
    return found


async def ask(ip: str, query: NameQuery, timeout: float, retries: int) -> Reply | None:
    """The first reply to one query that parses as an answer to it, or None."""
    ident = new_ident()
    return await exchange(ip, query.port, (query.request(ip, ident),), lambda data: query.parse(data, ident),
                          timeout=timeout, retries=retries)
