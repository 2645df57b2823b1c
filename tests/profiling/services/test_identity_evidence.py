"""The stable evidence service detection keeps of which machine a port is: a TLS certificate's
SHA-256 fingerprint and an SSH server's host key (hostkey.py), against servers on loopback,
real and hostile: a fetch ends in time, reads a bounded number of bytes, and never raises."""

from __future__ import annotations

import asyncio
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


def keygen_fingerprint(path: Path) -> str:
    """What `ssh-keygen -lf` prints of a key: "256 SHA256:... comment (ED25519)"."""
    return subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True,
                          check=True).stdout.split()[1]


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


def test_a_server_that_never_stops_talking_is_cut_at_max_read() -> None:
    sent = 0

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        writer.write(b"SSH-2.0-OpenSSH_9.2p1\r\n")
        packet = _ignore_packet()
        try:
            while True:
                writer.write(packet)
                await writer.drain()
                sent += len(packet)
        except OSError:
            pass

    async def check(port: int) -> None:
        start = time.monotonic()
        assert await hostkey.fetch("127.0.0.1", port, timeout=10.0) is None
        assert time.monotonic() - start < 2.0, "ended by the byte cap, long before its timeout"
        await asyncio.sleep(0.1)
        # what the server got written before the cut: the cap and what the sockets' buffers hold
        assert sent < hostkey.MAX_READ + 8 * 1024 * 1024
    asyncio.run(_with_server(endless, check))


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
