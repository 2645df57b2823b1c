"""Which service answers on a UDP port: the protocol's own query over an ordinary datagram socket.

A port the scan found open is asked with the probes made for it, or with every probe when it
has none (an answer to the scan's empty datagram names nothing). A port the scan heard nothing
from (open|filtered) is asked only with its own probes, as nmap -sV does: a service that
ignores an empty datagram still answers its protocol's query. Each exchange uses a socket of its
own, connected to the port (so only that port can answer, and ICMP port unreachable ends it at
once), or, for a service answering from another port (TFTP), unconnected and filtered by address.

What one port costs is bounded whatever the other side does: each probe's requests are sent
1 + `retries` times, `timeout` apart, and an exchange ends at the first answer that names the
product or once each of its requests is answered, or else when its waits are over, with the
best answer heard (ntpsec answers mode 3 but not mode 6: its exchange takes the whole wait). At most `concurrency`
exchanges are in flight; the caller bounds the whole with its deadline.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable

import structlog

from netscand.profiling.services.base import ServiceInfo
from netscand.profiling.udp import dns, memcached, ntp, rpcbind, sip, ssdp, tftp
from netscand.profiling.udp.base import UdpProbe, safe_parse

PROBES: tuple[UdpProbe, ...] = (dns, ntp, memcached, ssdp, sip, tftp, rpcbind)
PROBE_PORTS = frozenset(port for probe in PROBES for port in probe.ports)
Target = tuple[str, int, bool]  # address, port, whether the scan saw it answer (open)
UdpResults = dict[tuple[str, int], ServiceInfo]
log = structlog.get_logger()


def probes_for(port: int, answered: bool) -> tuple[UdpProbe, ...]:
    own = tuple(p for p in PROBES if port in p.ports)
    return own or (PROBES if answered else ())


async def detect_udp(targets: Iterable[Target], *, timeout: float = 1.0, retries: int = 1,
                     concurrency: int = 64, found: UdpResults | None = None) -> UdpResults:
    """{(ip, port): the service identified}; ports nothing was recognised on are left out.

    `found` is filled as ports finish, so a caller that stops waiting keeps what came.
    """
    found = {} if found is None else found
    limit = asyncio.Semaphore(concurrency)

    async def one(ip: str, port: int, probe: UdpProbe) -> ServiceInfo | None:
        async with limit:
            try:
                return await exchange(ip, port, probe, timeout, retries)
            except Exception:  # a bug on one port's bytes costs that port, not the others
                log.exception("udp_detect.failed", ip=ip, port=port, probe=probe.name)
                return None

    async def port_task(ip: str, port: int, answered: bool) -> None:
        answers = await asyncio.gather(*(one(ip, port, p) for p in probes_for(port, answered)))
        best = _best(a for a in answers if a is not None)
        if best is not None:
            found[ip, port] = best

    await asyncio.gather(*(port_task(ip, port, answered) for ip, port, answered in dict.fromkeys(targets)))
    return found


def _best(answers: Iterable[ServiceInfo]) -> ServiceInfo | None:
    """The first answer that names a product, else the first at all."""
    ordered = list(answers)
    return next((a for a in ordered if a.product), ordered[0] if ordered else None)


async def exchange(ip: str, port: int, probe: UdpProbe, timeout: float, retries: int) -> ServiceInfo | None:
    """One probe's exchange with ip:port: its best answer, or None."""
    loop = asyncio.get_running_loop()
    ident = 1 + secrets.randbelow(0xFFFE)  # 1..0xFFFF: fits every protocol's id field
    named: asyncio.Future[ServiceInfo | None] = loop.create_future()
    datagrams = probe.requests(ip, ident)
    listener = _Listener(probe, ip, ident, len(datagrams), named)
    try:
        if probe.any_source_port:
            transport, _ = await loop.create_datagram_endpoint(lambda: listener, local_addr=("0.0.0.0", 0))
        else:
            transport, _ = await loop.create_datagram_endpoint(lambda: listener, remote_addr=(ip, port))
    except OSError:  # no route, no usable source address: no answer either
        return None
    try:
        for _ in range(retries + 1):
            for datagram in datagrams:
                transport.sendto(datagram, (ip, port) if probe.any_source_port else None)
            try:
                # shield: a timeout must not cancel the future, which stays for the next send
                return await asyncio.wait_for(asyncio.shield(named), timeout)
            except TimeoutError:
                if listener.fallback is not None:
                    return listener.fallback  # it answered, just not with its name
        return None
    finally:
        transport.close()


class _Listener(asyncio.DatagramProtocol):
    """Resolves `named` with the first answer naming a product, or with the first answer once
    `expected` answers came (None: the port is closed); until then an answer that only proves
    the service waits in `fallback`."""

    def __init__(self, probe: UdpProbe, ip: str, ident: int, expected: int,
                 named: asyncio.Future[ServiceInfo | None]) -> None:
        self._probe, self._ip, self._ident, self._named = probe, ip, ident, named
        self._expected = expected
        self._heard = 0
        self.fallback: ServiceInfo | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr[0] != self._ip or self._named.done():
            return
        info = safe_parse(self._probe, data, self._ident)
        if info is None:
            return
        self._heard += 1
        if info.product:
            self._named.set_result(info)
            return
        self.fallback = self.fallback or info
        if self._heard >= self._expected:  # every request answered: nothing better is coming
            self._named.set_result(self.fallback)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable (ECONNREFUSED) on a connected socket: closed, on every retry too.
        if isinstance(exc, ConnectionRefusedError) and not self._named.done():
            self._named.set_result(self.fallback)
