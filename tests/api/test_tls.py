"""The TLS listener speaks TLS 1.2 and 1.3 and nothing older (netscand.tls.server_context); its
connections are counted from accept, before TLS, and a handshake has a deadline
(netscand.api.server)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
import uvloop

from netscand.api import create_app, listener
from netscand.api.protocol import BoundedHttpTools
from netscand.api.server import Connections, Gate, GatedServer
from tests.api.conftest import Api, daemon_tls_context

# Python deprecates the old versions; asking for them is the point here.
pytestmark = pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")


def client_context(cafile: Path, version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that offers `version` only. SECLEVEL=0: OpenSSL 3 would refuse TLS 1.1 on its
    own at the default level, and the test is whether the server does."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.minimum_version = ctx.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def handshake(address: tuple[str, int], ctx: ssl.SSLContext) -> str:
    """The TLS version a handshake with `address` agreed on; ssl.SSLError if there was none."""
    with socket.create_connection(address, timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=address[0]) as conn:
        version = conn.version()
        assert version is not None
        return version


def permissive_server(cert: Path, key: Path) -> tuple[tuple[str, int], threading.Thread]:
    """A one-handshake TLS server on 127.0.0.1 that takes TLS 1.1 too: it shows whether this
    machine's OpenSSL can speak TLS 1.1 at all."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname(), thread


def test_the_servers_context_holds_tls_at_1_2_or_newer(certificate: tuple[Path, Path]) -> None:
    ctx = daemon_tls_context(*certificate)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version == ssl.TLSVersion.MAXIMUM_SUPPORTED
    assert ctx.protocol == ssl.PROTOCOL_TLS_SERVER


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_clients_are_served(api: Api, certificate: tuple[Path, Path],
                                            version: ssl.TLSVersion) -> None:
    ctx = client_context(certificate[0], version)
    with httpx.Client(base_url=api.base_url, verify=ctx) as client:
        r = client.get("/healthz")
        assert r.status_code == 200
        assert r.extensions["network_stream"].get_extra_info("ssl_object").version() == \
            {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]


def test_a_tls_1_1_client_is_refused(api: Api, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    old = client_context(cert, ssl.TLSVersion.TLSv1_1)
    address, thread = permissive_server(cert, key)
    try:
        speaks_1_1 = handshake(address, old) == "TLSv1.1"
    except ssl.SSLError:
        speaks_1_1 = False
    thread.join(timeout=5)
    if not speaks_1_1:
        # This OpenSSL cannot even try TLS 1.1; the context's floor is what there is to check.
        assert daemon_tls_context(cert, key).minimum_version == ssl.TLSVersion.TLSv1_2
        return
    url = urlsplit(api.base_url)
    assert url.hostname is not None and url.port is not None
    # The server ends the handshake at the client's hello (the client sees an alert or the
    # connection closing, depending on the event loop's TLS): the same client the permissive
    # server took, so the version is why.
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake((url.hostname, url.port), old)
    # The listener carries on for clients that speak a current version.
    assert handshake((url.hostname, url.port), client_context(cert, ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"


# Connections counted from accept, before TLS (netscand.api.server): GatedServer serves the real
# app on a real TLS port, on its own uvloop thread, as the control process does.

class Gated:
    def __init__(self, api: Api, context: ssl.SSLContext, limits: Connections) -> None:
        self.gate = Gate("tcp", limits)
        listening = socket.create_server(("127.0.0.1", 0))
        self.address = listening.getsockname()
        config = uvicorn.Config(listener(create_app(api.orchestrator, api.store), "tcp"), lifespan="off",
                                log_config=None, access_log=False, http=BoundedHttpTools, proxy_headers=False,
                                ws="none")
        self.server = GatedServer(config, self.gate, context)
        self.thread = threading.Thread(target=uvloop.run, args=(self.server.serve(sockets=[listening]),),
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 5
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.server.started

    def connect(self, source: str = "127.0.0.1") -> socket.socket:
        return socket.create_connection(self.address, timeout=5, source_address=(source, 0))

    def served(self, verify: ssl.SSLContext, source: str = "127.0.0.1") -> bool:
        """Whether a TLS client from `source` gets /healthz answered."""
        transport = httpx.HTTPTransport(verify=verify, local_address=source)
        with httpx.Client(base_url=f"https://127.0.0.1:{self.address[1]}", transport=transport, timeout=5) as c:
            try:
                return c.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

    def wait_open(self, count: int) -> None:
        deadline = time.monotonic() + 5
        while self.gate.open != count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.gate.open == count

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def gated(api: Api, certificate: tuple[Path, Path]) -> Iterator[Callable[[Connections], Gated]]:
    made: list[Gated] = []

    def make(limits: Connections) -> Gated:
        made.append(Gated(api, daemon_tls_context(*certificate), limits))
        return made[-1]

    try:
        yield make
    finally:
        for g in made:
            g.stop()


def closed_within(s: socket.socket, seconds: float) -> float | None:
    """How long until the server closed `s` (None: still open after `seconds`)."""
    began = time.monotonic()
    s.settimeout(seconds)
    try:
        data = s.recv(1)
    except TimeoutError:
        return None
    except ConnectionResetError:
        data = b""
    assert data == b""
    return time.monotonic() - began


def test_a_connection_that_never_starts_tls_is_closed_at_the_handshake_deadline(gated: Callable[[Connections], Gated],
                                                                               api: Api) -> None:
    g = gated(Connections(10, 10, handshake_timeout_s=0.5))
    with g.connect() as silent:
        g.wait_open(1)
        took = closed_within(silent, 5)
    assert took is not None and 0.3 <= took < 3
    g.wait_open(0)
    assert g.served(api.tls)  # and the listener serves the next client


def test_connections_over_the_per_address_limit_are_closed_at_once(gated: Callable[[Connections], Gated],
                                                                   api: Api) -> None:
    g = gated(Connections(10, 3, handshake_timeout_s=30))
    held = [g.connect() for _ in range(3)]
    g.wait_open(3)
    with g.connect() as fourth:
        took = closed_within(fourth, 2)
        assert took is not None and took < 1  # before any TLS, long before the deadline
    assert not g.served(api.tls)  # a real client from the same address too
    assert g.served(api.tls, source="127.0.0.2")  # another address has its own allowance
    held.pop().close()
    g.wait_open(2)
    assert g.served(api.tls)  # a closed connection gave its place back
    for s in held:
        assert closed_within(s, 0.05) is None  # the ones admitted were never touched
        s.close()
    g.wait_open(0)


def test_the_listener_limit_holds_over_all_addresses(gated: Callable[[Connections], Gated], api: Api) -> None:
    g = gated(Connections(4, 4, handshake_timeout_s=30))
    held = [g.connect(f"127.0.0.{1 + i % 2}") for i in range(4)]
    g.wait_open(4)
    with g.connect("127.0.0.3") as fifth:
        assert closed_within(fifth, 2) is not None
    # Lowered while connections are open (a reload): they stay, new ones wait for room.
    g.gate.limits = Connections(2, 2, handshake_timeout_s=30)
    for s in held[:2]:
        s.close()
    g.wait_open(2)
    assert not g.served(api.tls, source="127.0.0.3")
    for s in held[2:]:
        s.close()
    g.wait_open(0)
    assert g.served(api.tls, source="127.0.0.3")


def test_every_way_a_connection_ends_gives_its_place_back(gated: Callable[[Connections], Gated], api: Api) -> None:
    g = gated(Connections(8, 8, handshake_timeout_s=0.5))
    assert all(g.served(api.tls) for _ in range(5))  # served, then closed by the client
    with g.connect() as garbage:
        garbage.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not a TLS hello
        assert closed_within(garbage, 3) is not None
    with g.connect():
        pass  # gone before its handshake
    with g.connect() as silent:
        assert closed_within(silent, 3) is not None  # timed out
    with socket.create_connection(g.address) as raw, api.tls.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # half a head, then gone
    g.wait_open(0)
