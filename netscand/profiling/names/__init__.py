"""Host names and identities asked of each host over UDP: mDNS, NetBIOS and SNMP.

`query_names(ips)` sends each host one query per protocol (modules `mdns`, `netbios`, `snmp`; see
`base.NameQuery`), from a connected UDP socket of its own, so only that host's port can answer
it. A query waits `timeout` for an answer, is sent again up to `retries` times, and ends at
once when the host says the port is closed (ICMP port unreachable). Nothing here blocks the
event loop or raises for what the network does.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field

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
    loop = asyncio.get_running_loop()
    ident = 1 + secrets.randbelow(0xFFFE)  # a transaction id as DNS, NetBIOS and SNMP all carry
    answered: asyncio.Future[Reply | None] = loop.create_future()
    payload = query.request(ip, ident)
    try:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Listener(query, ident, answered), remote_addr=(ip, query.port))
    except OSError:  # no route, no usable source address: no answer either
        return None
    try:
        for _ in range(retries + 1):
            transport.sendto(payload)
            try:
                # shield: a timeout must not cancel the future, which stays for the next send
                return await asyncio.wait_for(asyncio.shield(answered), timeout)
            except TimeoutError:
                continue
        return None
    finally:
        transport.close()


class _Listener(asyncio.DatagramProtocol):
    """Resolves `answered` with the first datagram that parses, or None when the port is closed."""

    def __init__(self, query: NameQuery, ident: int, answered: asyncio.Future[Reply | None]) -> None:
        self._query = query
        self._ident = ident
        self._answered = answered

    def datagram_received(self, data: bytes, addr: object) -> None:
        reply = self._query.parse(data, self._ident)
        if reply is not None and not self._answered.done():
            self._answered.set_result(reply)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable (ECONNREFUSED): closed now, and so on every retry. Other errors
        # (host unreachable after ARP failed, ...) are left to the timeout and the retries.
        if isinstance(exc, ConnectionRefusedError) and not self._answered.done():
            self._answered.set_result(None)
