"""The control process: one event loop (uvloop) holding the scan orchestrator and one Starlette
app served by two uvicorn Servers, on the Unix socket and on the TLS port, each accepting through
a gate that bounds its connections (api/server.py).

It is a child of the supervisor and drops every capability first: it parses what API clients
and scanned hosts send. Signals are the daemon's, not uvicorn's: SIGTERM stops the servers after
the orchestrator has recorded running scans as cancelled; SIGHUP reloads the settings (config
file and TLS certificate) without touching running scans. Its row in shared memory tells the
supervisor it is ready, alive, how many scans it has and how many reloads it has done.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog
import uvicorn
import uvloop
from starlette.types import ASGIApp

from netscand import compose, privileges
from netscand.api import create_app, listener
from netscand.api.events import end_streams
from netscand.api.listener import PEER_KEY
from netscand.api.protocol import BoundedHttpTools
from netscand.api.server import Connections, Gate, GatedServer
from netscand.engine.shm import ControlRow, Shared
from netscand.scan.dispatch import Dispatcher
from netscand.scan.limits import Limits
from netscand.scan.orchestrator import Orchestrator
from netscand.store import Store
from netscand.tls import Certificate, server_context

log = structlog.get_logger()
STOP_REASON = "the daemon was stopped"
BEAT_EVERY = 0.5
# How long the servers wait at a stop for the answers under way (an export, a stream's last
# send to a client that reads nothing) before cancelling them: well within the supervisor's
# STOP_TIMEOUT, after which it kills this process before the store is closed.
GRACEFUL_STOP_S = 2


@dataclass(frozen=True)
class Listeners:
    unix: socket.socket
    tcp: socket.socket | None


@dataclass(frozen=True)
class Settings:
    """What a reload changes: limits for scans started from then on, the certificate, and the
    listeners' bounds for connections made from then on."""

    limits: Limits
    certificate: Certificate | None  # None when there is no TLS listener
    unix: Connections
    tcp: Connections


class SettingsError(Exception):
    """The config file or the certificate can't be used: the current settings stay."""


Loader = Callable[[], Settings]  # reads the config file again; raises SettingsError


class _PeerProtocol(BoundedHttpTools):
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


class _Server(GatedServer):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the control process owns its signals


def main(shared: Shared, listeners: Listeners, db_path: Path, cve_path: Path, load: Loader,
         fallback: Settings) -> None:
    """`fallback`, the settings the daemon started with, serves when the config file has been
    broken since: a control process restarted then keeps the daemon up. `cve_path`: the CVE
    database, opened (made when missing) as the daemon's user, like the store."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which decides
    # Until the loop's handler is in place; the boot below reads the current config anyway.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    privileges.drop_all()
    uvloop.run(_serve(shared, listeners, db_path, cve_path, load, fallback))


async def _serve(shared: Shared, listeners: Listeners, db_path: Path, cve_path: Path, load: Loader,
                 fallback: Settings) -> None:
    loop = asyncio.get_running_loop()
    row = Row(shared)
    settings = _first_settings(load, fallback, row)
    store = Store(db_path)
    orchestrator = Orchestrator(store, Dispatcher(shared), settings.limits, compose.cve_matching(cve_path))
    await orchestrator.interrupted()
    orchestrator.attach(loop)
    tls = server_context(settings.certificate) if settings.certificate else None
    gates = {"unix": Gate("unix", settings.unix), "tcp": Gate("tcp", settings.tcp)}
    servers = _servers(create_app(orchestrator, store), listeners, gates, tls)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(load, orchestrator, tls, gates, row))
    tasks = [loop.create_task(s.serve(sockets=[sock])) for s, sock in servers]
    beat = loop.create_task(row.beat_forever(orchestrator, [s for s, _ in servers]))
    log.info("control.ready", listeners=[str(sock.getsockname()) for _, sock in servers])
    await _until_stopped(stop, tasks)
    await orchestrator.shutdown(STOP_REASON)
    end_streams()
    for s, _ in servers:
        s.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    beat.cancel()
    store.close()
    log.info("control.stopped")


def _first_settings(load: Loader, fallback: Settings, row: Row) -> Settings:
    try:
        return load()
    except SettingsError as exc:
        row.error = str(exc)
        log.error("config.unusable", error=row.error, using="the settings the daemon started with")
        return fallback


def _servers(app: ASGIApp, listeners: Listeners, gates: dict[str, Gate],
             tls: ssl.SSLContext | None) -> list[tuple[_Server, socket.socket]]:
    """The app on the Unix socket, and on the TLS port when there is one."""
    servers = [(_server(listener(app, "unix"), gates["unix"], None, _PeerProtocol), listeners.unix)]
    if listeners.tcp is not None and tls is not None:
        servers.append((_server(listener(app, "tcp"), gates["tcp"], tls, BoundedHttpTools), listeners.tcp))
    return servers


async def _until_stopped(stop: asyncio.Event, servers: list[asyncio.Task[None]]) -> None:
    """Wait for SIGTERM. A server that ends before it ends this process: a listener nobody
    serves must not look alive to the supervisor, which restarts a control process that exits."""
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([stopping, *servers], return_when=asyncio.FIRST_COMPLETED)
    if stopping in done:
        return
    for task in done:
        task.result()  # its exception, with its traceback, is why this process exits
    raise RuntimeError("an API server stopped on its own")


class Row:
    """This process's row in shared memory, for the supervisor (which has no store and no loop)."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.reloads = shared.control_row().reloads + 1  # this boot read the config: one more
        self.error = ""
        self.ready = False
        self.running = self.queued = 0

    def publish(self) -> None:
        self.shared.set_control_row(ControlRow(os.getpid(), int(self.ready), self.running, self.queued,
                                               self.reloads, time.monotonic(), self.error))

    async def beat_forever(self, orchestrator: Orchestrator, servers: list[uvicorn.Server]) -> None:
        while True:
            self.ready = all(s.started for s in servers)
            self.running, self.queued = len(orchestrator.active), len(orchestrator.queue)
            self.publish()
            await asyncio.sleep(BEAT_EVERY)


def _reload(load: Loader, orchestrator: Orchestrator, tls: ssl.SSLContext | None, gates: dict[str, Gate],
            row: Row) -> None:
    try:
        settings = load()
        if tls is not None and settings.certificate is not None:
            # New connections get the new certificate; the loader already proved the pair loads.
            tls.load_cert_chain(settings.certificate.cert, settings.certificate.key)
            log.info("tls.certificate", path=str(settings.certificate.cert), sha256=settings.certificate.fingerprint)
        orchestrator.reconfigure(settings.limits)
        gates["unix"].limits, gates["tcp"].limits = settings.unix, settings.tcp  # last: nothing after can fail
    except Exception as exc:  # whatever it was, the reload gets its answer and the settings stay
        row.error = str(exc) or type(exc).__name__
        log.error("daemon.reload_failed", error=row.error)
    else:
        row.error = ""
        log.info("daemon.reloaded")
    row.reloads += 1
    row.publish()


def _server(app: ASGIApp, gate: Gate, tls: ssl.SSLContext | None, protocol: type) -> _Server:
    """`tls` is our own SSLContext: it holds TLS at 1.2 or newer, and a reload loads a new
    certificate into it. No proxy headers: uvicorn would take X-Forwarded-For from any client
    on 127.0.0.1 as the client's address, which the authentication throttle is keyed on. No
    WebSocket: the API has none, and an upgraded connection would leave the gate's count."""
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, http=protocol,
                            proxy_headers=False, ws="none", timeout_graceful_shutdown=GRACEFUL_STOP_S)
    return _Server(config, gate, tls)
