"""A uvicorn Server that accepts its own connections: bounded in number from accept on, and given
a deadline for the TLS handshake.

uvicorn hands its listening socket to loop.create_server, which completes a TLS handshake before
anything of uvicorn's sees the connection (asyncio's default deadline: 60 s) and accepts as many
connections as come. 2,000 idle TCP connections would then hold 2,000 descriptors and TLS states
for a minute each, and starve the Unix socket of descriptors. So each listening socket is read
here (loop.add_reader, accept() until it would block) and every connection is counted by a Gate
before its handshake: over the listener's limit, in total or for its client address, it is
closed at once. Admitted, it goes to loop.connect_accepted_socket with the listener's handshake
deadline, and uvicorn's own protocol serves it; its count is released when it closes, whether
its handshake failed or it was served.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
import uvicorn

log = structlog.get_logger()

ACCEPT_BATCH = 64  # accepts per wake-up: a flood of connects can't hold the loop for long
ACCEPT_PAUSE_S = 0.5  # after accept() failed for want of descriptors or memory
LOG_EVERY_S = 10.0  # refusals are logged as a count this often at most: a flood is not a log flood
IPV6_PREFIX = 64  # an IPv6 client is counted by its /64: one host may hold the whole subnet


@dataclass(frozen=True)
class Connections:
    """A listener's bounds: connections open at once in total and per client address (None:
    not counted per address), and how long a TLS handshake may take."""

    total: int
    per_address: int | None = None
    handshake_timeout_s: float | None = None


def client_key(host: str) -> str:
    """What a client's connections are counted under: its address, an IPv6 one's /64."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


class Gate:
    """One listener's count of open connections, from accept to close. `limits` may be replaced
    (a reload): connections already open stay, new ones are held to the new bounds."""

    def __init__(self, name: str, limits: Connections) -> None:
        self.name, self.limits = name, limits
        self.open = 0
        self._by_client: Counter[str] = Counter()
        self._unlogged: Counter[str] = Counter()  # refusals and failed handshakes since the last log line
        self._logged_at = 0.0

    def admit(self, client: str | None) -> Callable[[], None] | None:
        """A release function for an admitted connection (call it when it closes; more calls do
        nothing), or None when the connection is over a limit."""
        per_client = self.limits.per_address
        if self.open >= self.limits.total:
            self.note("refused_listener_full")
            return None
        if client is not None and per_client is not None and self._by_client[client] >= per_client:
            self.note("refused_client_full")
            return None
        self.open += 1
        if client is not None:
            self._by_client[client] += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self.open -= 1
            if client is not None:
                self._by_client[client] -= 1
                if not self._by_client[client]:
                    del self._by_client[client]

        return release

    def note(self, what: str) -> None:
        """Count a refusal or a failure, and log the counts at most every LOG_EVERY_S."""
        self._unlogged[what] += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            log.warning("api.connections", listener=self.name, open=self.open, **self._unlogged)
            self._unlogged.clear()
            self._logged_at = now


class _Released(asyncio.Protocol):
    """uvicorn's protocol for one connection, releasing the gate's count when it is lost."""

    def __init__(self, inner: asyncio.Protocol, release: Callable[[], None]) -> None:
        self._inner, self._release = inner, release

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._inner.connection_lost(exc)
        finally:
            self._release()

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class GatedServer(uvicorn.Server):
    """uvicorn.Server on listening sockets it accepts from itself, through `gate`; `tls`
    (our own context, which a reload loads a new certificate into) makes it HTTPS."""

    def __init__(self, config: uvicorn.Config, gate: Gate, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(config)
        self.gate, self.tls = gate, tls
        self._listening: list[socket.socket] = []
        self._handshakes: set[asyncio.Task[None]] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn's startup with no socket of its own: the lifespan and server state it sets up
        # are all the protocol needs; accepting is done below.
        await super().startup(sockets=[])
        loop = asyncio.get_running_loop()
        for sock in sockets or []:
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._accept, sock)
            self._listening.append(sock)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._listening:
            loop.remove_reader(sock.fileno())
        self._listening.clear()
        for task in list(self._handshakes):
            task.cancel()  # closes its connection
        await super().shutdown(sockets=sockets)

    def _accept(self, listening: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, address = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # gone before it was accepted
            except OSError as exc:
                self._pause(listening, exc)
                return
            self._admit(conn, address)

    def _pause(self, listening: socket.socket, exc: OSError) -> None:
        """Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the pending connection
        stays in the backlog, and the socket would wake the loop at once, for ever."""
        self.gate.note(f"accept_failed_{errno.errorcode.get(exc.errno or 0, 'unknown')}")
        loop = asyncio.get_running_loop()
        loop.remove_reader(listening.fileno())

        def resume() -> None:
            if listening in self._listening:
                loop.add_reader(listening.fileno(), self._accept, listening)

        loop.call_later(ACCEPT_PAUSE_S, resume)

    def _admit(self, conn: socket.socket, address: Any) -> None:
        tcp = conn.family in (socket.AF_INET, socket.AF_INET6)
        release = self.gate.admit(client_key(address[0]) if tcp else None)
        if release is None:
            conn.close()
            return
        if tcp:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # answers are small: send them now
        conn.setblocking(False)
        task = asyncio.get_running_loop().create_task(self._connect(conn, release))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _connect(self, conn: socket.socket, release: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        protocol = _Released(self._protocol(loop), release)
        timeout = self.gate.limits.handshake_timeout_s if self.tls else None
        try:
            # The loop owns the socket from here: it closes it when the connection ends or fails.
            await loop.connect_accepted_socket(lambda: protocol, conn, ssl=self.tls, ssl_handshake_timeout=timeout)
        except asyncio.CancelledError:
            release()
            raise
        except Exception:  # noqa: BLE001 - whatever a stranger's bytes did, only this connection ends
            # Timed out (ConnectionAbortedError), not TLS, or gone: uvicorn never saw it.
            release()
            self.gate.note("handshake_failed")

    def _protocol(self, loop: asyncio.AbstractEventLoop) -> asyncio.Protocol:
        # What uvicorn's startup() builds for loop.create_server (uvicorn 0.29 to 0.55).
        return self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state, _loop=loop)
