"""The control process: one event loop (uvloop) holding the scan orchestrator and one Starlette
app served by two uvicorn Servers, on the Unix socket and on the TLS port.

It is a child of the supervisor. Signals are the daemon's, not uvicorn's: SIGTERM stops the
servers after the orchestrator has recorded running scans as cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

import structlog
import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from netscand.api import create_app, listener
from netscand.api.listener import PEER_KEY
from netscand.engine import plan as plans
from netscand.engine.shm import Shared
from netscand.scan.dispatch import Dispatcher
from netscand.scan.orchestrator import Limits, Orchestrator
from netscand.store import Store
from netscand.tls import Certificate, server_context

log = structlog.get_logger()
STOP_REASON = "the daemon was stopped"


@dataclass(frozen=True)
class Listeners:
    unix: socket.socket
    tcp: socket.socket | None
    certificate: Certificate | None


class _PeerProtocol(HttpToolsProtocol):
    """HTTP over the Unix socket, with the peer's uid and pid (SO_PEERCRED) in every request's
    scope, for the access log: the socket's permissions are the authorization, so who used it
    is worth recording."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._peer: dict[str, int] | None = None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
                self._peer = {"uid": uid, "pid": pid}

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._peer is not None:
            self.scope[PEER_KEY] = self._peer  # type: ignore[literal-required]


class _Server(uvicorn.Server):
    def capture_signals(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # the control process owns its signals


def main(shared: Shared, limits: Limits, listeners: Listeners, db_path: Path) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which decides
    uvloop.run(_serve(shared, limits, listeners, db_path))


async def _serve(shared: Shared, limits: Limits, listeners: Listeners, db_path: Path) -> None:
    loop = asyncio.get_running_loop()
    for slot in shared.plans:
        plans.release(slot)  # plans of a previous control process have no owner any more
    store = Store(db_path)
    orchestrator = Orchestrator(store, Dispatcher(shared), limits)
    orchestrator.interrupted()
    orchestrator.attach(loop)
    app = create_app(orchestrator, store)
    servers = [(_server(listener(app, "unix"), None, _PeerProtocol), listeners.unix)]
    if listeners.tcp is not None and listeners.certificate is not None:
        servers.append((_server(listener(app, "tcp"), listeners.certificate, HttpToolsProtocol), listeners.tcp))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [loop.create_task(s.serve(sockets=[sock])) for s, sock in servers]
    log.info("control.ready", listeners=[str(sock.getsockname()) for _, sock in servers])
    await stop.wait()
    await orchestrator.shutdown(STOP_REASON)
    for s, _ in servers:
        s.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    store.close()


def _server(app: object, cert: Certificate | None, protocol: type) -> _Server:
    # Our own SSLContext, to hold TLS at 1.2 or newer.
    factory = (lambda _config, _default: server_context(cert)) if cert else None
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False,
                            ssl_context_factory=factory, http=protocol)
    return _Server(config)
