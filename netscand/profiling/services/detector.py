"""Which service answers on an open port: a few short connections, never blocking the event loop.

Per port, at most `max_connections` connections, in this order:
0. on a TLS port whose likely service speaks only when spoken to (HTTPS on 443, 8443): that
   probe over TLS at once, since waiting for a plain banner there would only cost banner_wait;
1. the null probe: connect and read what the service says first (banner_wait seconds). If it
   says nothing, the same connection sends the port's likeliest probe, saving a connection;
2. over TLS, when the port usually speaks TLS or a plain reply looked like TLS: read a banner
   again (imaps, pop3s, smtps), else send the port's likeliest probe (HTTP when it has none);
3. the port's other likely probes, then the rest in `probes.ALL` order.
An open port that answers none of them is "unknown", with whatever banner it sent.

What one port can cost is bounded whatever the other side does: a read ends at MAX_READ bytes,
at IDLE_GAP of silence after the first bytes, or at its deadline, so a service that drips bytes
or never stops talking holds a connection no longer than one that is silent; each of the at most
MAX_CONNECTIONS exchanges takes at most 2 x timeout + banner_wait (connect and TLS handshake,
banner, answer). A port recognised as SSH from its banner takes one more connection, of at most
`timeout` (hostkey.py), for its host key; no other port does. A host's ports together end at the
per-host deadline detect_all is given.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

import structlog

from netscand.profiling.services.base import Probe, ServiceInfo, printable, safe_parse
from netscand.profiling.services.probes import ACTIVE, BANNER, http, tls

MAX_READ = 64 * 1024  # enough for any greeting and an HTTP head with the start of its page
IDLE_GAP = 0.5  # after the first bytes, a pause this long ends the reply (Redis keeps the line open)
MAX_CONNECTIONS = 4
PER_HOST = 8  # ports of one host detected at once: no host takes every slot, nor floods a device
# One host's detection, all its ports, ends after this; identify passes its profile's budget.
HOST_DEADLINE_S = 120.0
# The usual names of services spoken inside TLS; others keep their name and gain extra["tls"].
_TLS_NAMES = {"http": "https", "imap": "imaps", "pop3": "pop3s", "smtp": "smtps", "ftp": "ftps", "mqtt": "mqtts"}
_CONTEXT = tls.client_context()
Results = dict[tuple[str, int], ServiceInfo | None]
log = structlog.get_logger()


@dataclass(frozen=True)
class _Reply:
    banner: bytes  # what the server said before we sent anything
    answer: bytes  # what it said after our payload
    tls: dict[str, object]  # certificate fields and protocol version, over TLS


async def detect(
    ip: str, port: int, *, timeout: float = 5.0, banner_wait: float = 2.0, max_connections: int = MAX_CONNECTIONS
) -> ServiceInfo | None:
    """The service on ip:port; "unknown" when nothing is recognised; None when it won't connect."""
    banner_wait = min(banner_wait, timeout)
    likely = [p for p in ACTIVE if port in p.ports and p is not tls]
    tls_hint = port in tls.ports
    connections = 0
    if tls_hint and likely:
        connections += 1
        reply = await _exchange(ip, port, likely[0], use_tls=True, banner_wait=0.0, timeout=timeout)
        if reply is not None:
            return _over_tls(reply, likely[0], port)
    first = likely[0] if likely and not tls_hint else None
    reply = await _exchange(ip, port, first, use_tls=False, banner_wait=banner_wait, timeout=timeout)
    if reply is None:
        return None
    banner = reply.banner
    if banner:
        found = _from_banner(banner, port) or ServiceInfo("unknown", banner=printable(banner))
        return await _with_hostkey(ip, port, found, timeout) if found.service == "ssh" else found
    found = _from_answer(first, reply.answer)
    if found and found.service != "tls" and not found.extra.get("tls_required"):
        return found
    tried_tls = connections > 0  # step 0 failed its handshake: no TLS here
    tls_hint = (tls_hint or found is not None) and not tried_tls
    queue: list[tuple[bool, Probe]] = [(True, likely[0] if likely else http)] if tls_hint else []
    queue += [(False, p) for p in likely + [p for p in ACTIVE if p not in likely] if p is not first]
    connections += 1
    while queue and connections < max_connections:
        use_tls, probe = queue.pop(0)
        connections += 1
        # The null probe already heard the plain service stay silent; only TLS may hide a banner.
        wait = banner_wait if use_tls else 0.0
        reply = await _exchange(ip, port, probe, use_tls=use_tls, banner_wait=wait, timeout=timeout)
        if reply is None:
            continue
        if use_tls:
            return _over_tls(reply, probe, port)
        found = _from_answer(probe, reply.answer)
        if found is None:
            continue
        if (found.service == "tls" or found.extra.get("tls_required")) and not tls_hint:
            tls_hint = True
            queue.insert(0, (True, likely[0] if likely else http))
        elif found.service != "tls":
            return found
    return ServiceInfo("unknown")


class Detector:
    """detect() over many targets: at most `concurrency` ports at a time, `per_host` of one host.

    Each host's detection ends at its deadline, counted from when the first of its ports gets a
    slot (so hosts queued behind others don't spend theirs waiting); what is unfinished then is
    left out of the results, as if detection had said nothing.
    """

    def __init__(self, concurrency: int = 64, timeout: float = 5.0, per_host: int = PER_HOST) -> None:
        self._limit = asyncio.Semaphore(concurrency)
        self._timeout = timeout
        self._per_host = per_host

    async def detect_all(
        self, targets: list[tuple[str, int]], *, host_deadline: float = HOST_DEADLINE_S,
        found: Results | None = None,
    ) -> Results:
        """{(ip, port): what answers} for the targets detection finished on (None: no connection).

        `found` is filled as ports finish, so a caller that stops waiting keeps what came.
        """
        found = {} if found is None else found
        by_host: dict[str, list[int]] = {}
        for ip, port in targets:
            by_host.setdefault(ip, []).append(port)
        await asyncio.gather(*(self._host(ip, ports, host_deadline, found) for ip, ports in by_host.items()))
        return found

    async def _host(self, ip: str, ports: list[int], deadline: float, found: Results) -> None:
        host_limit = asyncio.Semaphore(self._per_host)
        try:
            async with asyncio.timeout(None) as budget, asyncio.TaskGroup() as group:
                for port in ports:
                    group.create_task(self._port(ip, port, host_limit, budget, deadline, found))
        except TimeoutError:
            log.info("detect.host_deadline", ip=ip, unfinished=sum((ip, p) not in found for p in ports))

    async def _port(self, ip: str, port: int, host_limit: asyncio.Semaphore, budget: asyncio.Timeout,
                    deadline: float, found: Results) -> None:
        async with host_limit, self._limit:
            if budget.when() is None:  # the host's first port to start: its clock starts now
                budget.reschedule(asyncio.get_running_loop().time() + deadline)
            try:
                found[ip, port] = await detect(ip, port, timeout=self._timeout)
            except Exception:  # a bug on one port's bytes costs that port, not the host's others
                log.exception("detect.failed", ip=ip, port=port)


async def _with_hostkey(ip: str, port: int, found: ServiceInfo, timeout: float) -> ServiceInfo:
    """An SSH service with its host key (extra["hostkey"]), the stable evidence of which machine it
    is, when a second connection gets it in `timeout`."""
    # Imported at the first SSH port: asyncssh (and the cryptography it loads) is a tenth of a
    # second of start-up that a scan without one, and netscanctl, must not pay.
    from netscand.profiling.services import hostkey

    key = await hostkey.fetch(ip, port, timeout=timeout)
    return replace(found, extra={**found.extra, "hostkey": key}) if key else found


def _from_banner(data: bytes, port: int) -> ServiceInfo | None:
    ordered = sorted(BANNER, key=lambda p: port not in p.ports)  # stable: the port's own first
    for probe in ordered:
        found = safe_parse(probe.parse, data)
        if found:
            return found
    return None


def _from_answer(probe: Probe | None, data: bytes) -> ServiceInfo | None:
    if probe is None or not data:
        return None
    # A TLS record in reply to a plain probe means the port wants TLS, whatever we asked.
    return safe_parse(probe.parse, data) or safe_parse(tls.parse, data)


def _over_tls(reply: _Reply, probe: Probe | None, port: int) -> ServiceInfo:
    found = _from_banner(reply.banner, port) if reply.banner else _from_answer(probe, reply.answer)
    if found is None or found.service == "tls":
        return ServiceInfo("tls", banner=printable(reply.banner), extra={"tls": reply.tls})
    extra = dict(found.extra)
    extra.pop("tls_required", None)
    extra["tls"] = reply.tls
    return replace(found, service=_TLS_NAMES.get(found.service, found.service), extra=extra)


async def _exchange(
    ip: str, port: int, probe: Probe | None, *, use_tls: bool, banner_wait: float, timeout: float
) -> _Reply | None:
    """Connect, read a banner; if none came and there is a payload, send it and read the answer.

    None when the connection (or the TLS handshake) fails. The connection, and the answer after
    the payload, each have `timeout`; the banner has `banner_wait`.
    """
    loop = asyncio.get_running_loop()
    # The TLS handshake counts against the connect's timeout (the asyncio.timeout below covers
    # both). OpenSSL refuses a Certificate message over 100 KiB (its max_cert_list), so a huge
    # chain fails the handshake rather than costing memory; only the leaf is parsed.
    tls_options: dict[str, Any] = {"ssl": _CONTEXT} if use_tls else {}
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(ip, port, limit=MAX_READ, **tls_options)
    except (OSError, TimeoutError):  # ssl.SSLError is an OSError
        return None
    try:
        tls_fields: dict[str, object] = {}
        if use_tls:
            ssl_object = writer.get_extra_info("ssl_object")
            tls_fields = {"version": ssl_object.version(), **tls.certificate_fields(ssl_object.getpeercert(True))}
        banner = await _read(reader, banner_wait, loop.time() + banner_wait)
        answer = b""
        if not banner and probe is not None and probe.payload is not None:
            deadline = loop.time() + timeout
            writer.write(probe.payload)
            await asyncio.wait_for(writer.drain(), timeout)
            answer = await _read(reader, timeout, deadline)
        return _Reply(banner, answer, tls_fields)
    except (OSError, TimeoutError):
        return _Reply(b"", b"", {})  # it connected, then failed: open, but said nothing usable
    finally:
        writer.transport.abort()  # no FIN/close_notify dance: we are done with it either way


async def _read(reader: asyncio.StreamReader, first_wait: float, deadline: float) -> bytes:
    """Bytes until EOF, MAX_READ, IDLE_GAP of silence after the first bytes, or the deadline."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    wait = first_wait
    while len(data) < MAX_READ:
        remaining = min(wait, deadline - loop.time())
        if remaining <= 0:
            break
        try:
            chunk = await asyncio.wait_for(reader.read(MAX_READ - len(data)), remaining)
        except (OSError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
        wait = IDLE_GAP
    return bytes(data)
