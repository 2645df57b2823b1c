"""The TLS listener speaks TLS 1.2 and 1.3 and nothing older (netscand.tls.server_context)."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

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
