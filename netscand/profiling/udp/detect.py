"""Which service answers on a UDP port: the protocol's own query over an ordinary datagram socket.

A port the scan found open is asked with the probes made for it, or with every probe when it
has none (an answer to the scan's empty datagram names nothing). A port the scan heard nothing
from (open|filtered) is asked only with its own probes, as nmap -sV does: a service that
ignores an empty datagram still answers its protocol's query. A port whose scan reply already
named its protocol (the engine's payload ports: IKE, CoAP...) is not asked with unrelated probes.
Each exchange is datagram.exchange: a socket of its own, its requests sent 1 + `retries` times,
`timeout` apart, ended at the first answer that names the product or once each of its requests
is answered, or else when its waits are over, with the best answer heard (ntpsec answers mode 3
but not mode 6: its exchange takes the whole wait).

What one host costs is bounded whatever it does: at most `per_host` of its exchanges at once,
and its detection ends at its `host_deadline` (a host answering every datagram cannot hold the
step for its hundreds of exchanges). At most `concurrency` exchanges are in flight in all; the
caller bounds the whole with its deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable

import structlog

from netscand.profiling import datagram
from netscand.profiling.datagram import new_ident
from netscand.profiling.services.base import ServiceInfo
from netscand.profiling.services.detector import HOST_DEADLINE_S
from netscand.profiling.udp import dns, memcached, ntp, rpcbind, sip, ssdp, tftp
from netscand.profiling.udp.base import UdpProbe, safe_parse

PROBES: tuple[UdpProbe, ...] = (dns, ntp, memcached, ssdp, sip, tftp, rpcbind)
PROBE_PORTS = frozenset(port for probe in PROBES for port in probe.ports)
PER_HOST = 8  # exchanges with one host at once: no host takes every slot, nor floods a device
Target = tuple[str, int, bool]  # address, port, whether the scan saw it answer (open)
UdpResults = dict[tuple[str, int], ServiceInfo]
log = structlog.get_logger()


def probes_for(port: int, answered: bool, recognised: Collection[int] = ()) -> tuple[UdpProbe, ...]:
    """The port's own probes; for an open port with none, every probe, unless the scan's reply
    already named its protocol (`recognised`: the engine's payload ports, IKE or CoAP, say)."""
    own = tuple(p for p in PROBES if port in p.ports)
    return own or (PROBES if answered and port not in recognised else ())


async def detect_udp(targets: Iterable[Target], *, timeout: float = 1.0, retries: int = 1,
                     concurrency: int = 64, per_host: int = PER_HOST, host_deadline: float = HOST_DEADLINE_S,
                     recognised: Collection[int] = (), found: UdpResults | None = None) -> UdpResults:
    """{(ip, port): the service identified}; ports nothing was recognised on are left out.

    At most `concurrency` exchanges at once, `per_host` of one host; each host's detection ends
    `host_deadline` seconds after its first exchange starts (a host answering every datagram
    costs its own budget, not the scan's). `found` is filled as ports finish, so a caller that
    stops waiting keeps what came.
    """
    found = {} if found is None else found
    limit = asyncio.Semaphore(concurrency)
    by_host: dict[str, list[tuple[int, UdpProbe]]] = {}
    for ip, port, answered in dict.fromkeys(targets):
        by_host.setdefault(ip, []).extend((port, p) for p in probes_for(port, answered, recognised))
    hosts = (_Host(ip, asked, limit, per_host, host_deadline, timeout, retries) for ip, asked in by_host.items())
    await asyncio.gather(*(host.run(found) for host in hosts))
    return found


class _Host:
    """One host's exchanges: `per_host` at once within the scan's `limit`, ended by the host's
    deadline, counted from when its first exchange gets a slot (hosts queued behind others do
    not spend theirs waiting)."""

    def __init__(self, ip: str, asked: list[tuple[int, UdpProbe]], limit: asyncio.Semaphore, per_host: int,
                 deadline: float, timeout: float, retries: int) -> None:
        self.ip, self.asked, self.limit, self.deadline = ip, asked, limit, deadline
        self.own = asyncio.Semaphore(per_host)
        self.timeout, self.retries = timeout, retries

    async def run(self, found: UdpResults) -> None:
        try:
            async with asyncio.timeout(None) as budget, asyncio.TaskGroup() as group:
                for port, probe in self.asked:
                    group.create_task(self._one(port, probe, budget, found))
        except TimeoutError:
            log.info("udp_detect.host_deadline", ip=self.ip, asked=len(self.asked))

    async def _one(self, port: int, probe: UdpProbe, budget: asyncio.Timeout, found: UdpResults) -> None:
        async with self.own, self.limit:
            if budget.when() is None:  # the host's first exchange to start: its clock starts now
                budget.reschedule(asyncio.get_running_loop().time() + self.deadline)
            try:
                info = await exchange(self.ip, port, probe, self.timeout, self.retries)
            except Exception:  # a bug on one port's bytes costs that port, not the others
                log.exception("udp_detect.failed", ip=self.ip, port=port, probe=probe.name)
                return
        # The port's best answer: the first that names a product, else the first at all.
        known = found.get((self.ip, port))
        if info is not None and (known is None or (info.product and not known.product)):
            found[self.ip, port] = info


async def exchange(ip: str, port: int, probe: UdpProbe, timeout: float, retries: int) -> ServiceInfo | None:
    """One probe's exchange with ip:port: the first answer naming the product, else the first."""
    ident = new_ident()
    return await datagram.exchange(ip, port, probe.requests(ip, ident), lambda data: safe_parse(probe, data, ident),
                                   timeout=timeout, retries=retries, final=lambda info: bool(info.product),
                                   any_source_port=probe.any_source_port)
