"""The stable evidence service detection keeps of which machine a port is: a TLS certificate's
SHA-256 fingerprint and an SSH server's host key (hostkey.py), against servers on loopback,
real and hostile: a fetch ends in time, reads a bounded number of bytes, and never raises."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import struct
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncssh
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netscand.profiling.services import detect, hostkey
from netscand.profiling.services.probes import tls
from tests.sshkeys import keygen_fingerprint

RECORDED = Path(__file__).parent / "recorded"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def test_a_certificate_has_the_sha256_of_its_der() -> None:
    der = (RECORDED / "https-nginx-cert.der").read_bytes()
    openssl = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-fingerprint", "-sha256"],
                             input=der, capture_output=True, check=True).stdout.decode()
    expected = openssl.strip().partition("=")[2].replace(":", "").lower()
    assert tls.certificate_fields(der)["sha256"] == hashlib.sha256(der).hexdigest() == expected
    assert "sha256" not in tls.certificate_fields(der[:-40])  # malformed: no fingerprint
    assert tls.certificate_fields(None) == {}


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostkey") / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


async def _with_server(handler: Handler, check: Callable[[int], Awaitable[None]]) -> None:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        await check(server.sockets[0].getsockname()[1])
    finally:
        server.close()


def test_the_host_key_is_what_ssh_keygen_prints(key_file: Path) -> None:
    async def run() -> None:
        server = await asyncssh.listen("127.0.0.1", 0, server_host_keys=[str(key_file)])
        port = server.sockets[0].getsockname()[1]
        try:
            assert await hostkey.fetch("127.0.0.1", port) == {
                "type": "ssh-ed25519", "fingerprint": keygen_fingerprint(key_file)}
            # detection of the port adds it to the service it recognised from the banner
            found = await detect("127.0.0.1", port, timeout=2.0, banner_wait=1.0)
            assert found is not None and found.service == "ssh" and found.product == "AsyncSSH"
            assert found.extra["hostkey"]["fingerprint"] == keygen_fingerprint(key_file)
        finally:
            server.close()
    asyncio.run(run())


def test_no_server_no_key() -> None:
    async def run() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        assert await hostkey.fetch("127.0.0.1", port, timeout=1.0) is None
    asyncio.run(run())


def test_a_silent_server_costs_the_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def check(port: int) -> None:
        start = time.monotonic()
        assert await hostkey.fetch("127.0.0.1", port, timeout=0.5) is None
        assert 0.5 <= time.monotonic() - start < 1.5
    asyncio.run(_with_server(silent, check))


def _ignore_packet() -> bytes:
    """An unencrypted SSH_MSG_IGNORE, as a server may send any number of before its KEXINIT."""
    payload = bytes([2]) + struct.pack(">I", 16000) + b"x" * 16000
    padding = 8 - (len(payload) + 5) % 8 + 8
    return struct.pack(">IB", len(payload) + padding + 1, padding) + payload + b"\0" * padding


def _endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Awaitable[None]:
    """A server that sends ignore packets for as long as it is read."""
    async def talk() -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2p1\r\n")
        packet = _ignore_packet()
        with contextlib.suppress(OSError):
            while True:
                writer.write(packet)
                await writer.drain()
    return talk()


def test_a_server_that_never_stops_talking_is_cut_at_max_read() -> None:
    async def check(port: int) -> None:
        start = time.monotonic()
        assert await hostkey.fetch("127.0.0.1", port, timeout=10.0) is None
        assert time.monotonic() - start < 2.0, "ended by the byte cap, long before its timeout"
    asyncio.run(_with_server(_endless, check))


def test_without_the_cap_that_server_is_read_until_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ended the fetch above is the cap: asyncssh reads such a server for as long as it talks."""
    monkeypatch.setattr(hostkey, "MAX_READ", 1 << 40)

    async def check(port: int) -> None:
        start = time.monotonic()
        assert await hostkey.fetch("127.0.0.1", port, timeout=1.5) is None
        assert time.monotonic() - start >= 1.5
    asyncio.run(_with_server(_endless, check))


class _Recording(asyncio.Protocol):
    def __init__(self) -> None:
        self.received, self.lost = 0, False

    def data_received(self, data: bytes) -> None:
        self.received += len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


class _Transport(asyncio.Transport):
    def __init__(self, inner: asyncio.Protocol) -> None:
        super().__init__()
        self.inner, self.aborted = inner, False

    def abort(self) -> None:
        self.aborted = True
        self.inner.connection_lost(None)


@given(st.lists(st.integers(1, 40_000), max_size=20))
def test_the_counting_transport_passes_on_at_most_its_limit(chunks: list[int]) -> None:
    inner = _Recording()
    counting = hostkey._Counting(inner, hostkey.MAX_READ)
    transport = _Transport(counting)
    counting.connection_made(transport)
    for n in chunks:
        if transport.aborted:
            break  # a real transport delivers nothing after abort
        counting.data_received(b"x" * n)
    assert inner.received == min(sum(chunks), inner.received) <= hostkey.MAX_READ
    assert transport.aborted == inner.lost == (sum(chunks) > hostkey.MAX_READ)


def _kexinit_kex_algs(packet: bytes) -> list[bytes]:
    """The key exchanges an unencrypted SSH_MSG_KEXINIT offers (RFC 4253 7.1)."""
    payload = packet[5:]
    assert payload[0] == 20
    (size,) = struct.unpack(">I", payload[17:21])
    return payload[21:21 + size].split(b",")


def test_no_group_exchange_is_offered() -> None:
    """A group exchange's server picks the prime, which the client checks on the event loop: what
    the client's KEXINIT offers, as a server reads it."""
    offered: list[bytes] = []

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2p1\r\n")
        await reader.readline()
        (size,) = struct.unpack(">I", await reader.readexactly(4))
        offered.extend(_kexinit_kex_algs(struct.pack(">I", size) + await reader.readexactly(size)))
        writer.close()

    async def check(port: int) -> None:
        assert await hostkey.fetch("127.0.0.1", port, timeout=2.0) is None
    asyncio.run(_with_server(server, check))
    assert b"curve25519-sha256" in offered
    assert [a for a in offered if b"group-exchange" in a or b"gex" in a or a.startswith(b"rsa")] == []


def test_a_server_offering_only_group_exchange_gives_no_key_at_once(key_file: Path) -> None:
    async def run() -> None:
        server = await asyncssh.listen("127.0.0.1", 0, server_host_keys=[str(key_file)],
                                       kex_algs=["diffie-hellman-group-exchange-sha256"])
        port = server.sockets[0].getsockname()[1]
        try:
            start = time.monotonic()
            assert await hostkey.fetch("127.0.0.1", port, timeout=5.0) is None
            assert time.monotonic() - start < 1.0
        finally:
            server.close()
    asyncio.run(run())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096), st.booleans())
def test_any_bytes_as_the_server_side_end_in_none_or_a_key(data: bytes, versioned: bool) -> None:
    async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((b"SSH-2.0-x\r\n" if versioned else b"") + data)
        await writer.drain()
        writer.close()

    async def check(port: int) -> None:
        start = time.monotonic()
        assert await hostkey.fetch("127.0.0.1", port, timeout=1.0) is None
        assert time.monotonic() - start < 2.0
    asyncio.run(_with_server(hostile, check))


def test_a_non_ssh_port_gets_no_second_connection() -> None:
    connections = 0

    async def ftp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.write(b"220 (vsFTPd 3.0.3)\r\n")
        await writer.drain()
        await reader.read()

    async def check(port: int) -> None:
        found = await detect("127.0.0.1", port, timeout=1.0, banner_wait=0.5)
        assert found is not None and found.service == "ftp" and "hostkey" not in found.extra
        assert connections == 1
    asyncio.run(_with_server(ftp, check))
