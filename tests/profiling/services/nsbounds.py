"""Runs inside the bounds test's network namespace: servers on 127.0.0.0/8 that misbehave on
purpose (drip bytes, never stop talking, never finish a handshake, send a 180 KiB certificate
chain), then detect(), Detector.detect_all and identify() on them. Prints one JSON document.
Usage: nsbounds.py DIRECTORY (where the certificates are written)
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from netscand.profiling.services import Detector, detector
from netscand.scan import identify as identify_module
from netscand.scan.result import Fingerprint, Host
from nsdetect import banner  # run as a script beside it: its directory is on sys.path

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TIMEOUT = 1.0  # detect()'s timeout and banner wait here
SSH = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
open_connections = 0  # connections the silent servers hold: detection must leave none behind


def tls_chain(directory: Path, extra_certs: int) -> ssl.SSLContext:
    """A server context whose chain is a leaf and `extra_certs` certificates of 300 names each."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(name: str, sans: int) -> bytes:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=2)))
        if sans:
            names = [x509.DNSName(f"name{i}.chain.example") for i in range(sans)]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    chain = directory / f"chain{extra_certs}.pem"
    chain.write_bytes(cert("leaf", 0) + b"".join(cert(f"ca{i}", 300) for i in range(extra_certs)))
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, directory / "key.pem")
    return context


def drip(first: bytes = b"", after_request: bool = False) -> Handler:
    """Says `first`, then one byte every 0.2 s for ever: never the IDLE_GAP that ends a read."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if after_request:
                await reader.read(1024)
            writer.write(first)
            while True:
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.2)
        except OSError:
            writer.close()

    return handle


async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            writer.write(b"A" * 65536)
            await writer.drain()
    except OSError:
        writer.close()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global open_connections
    open_connections += 1
    try:
        while await reader.read(4096):
            pass  # until the client gives up
    except OSError:
        pass
    finally:
        open_connections -= 1
        writer.close()


async def timed(work: Awaitable[Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = await work
    return result, time.monotonic() - started


async def one_port(port: int) -> dict[str, Any]:
    info, seconds = await timed(detector.detect("127.0.0.1", port, timeout=TIMEOUT, banner_wait=TIMEOUT))
    return {"info": info and dataclasses.asdict(info), "seconds": seconds}


async def read_cap(port: int) -> int:
    """How many bytes one read of the endless server takes (detector._read, the every-read path)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=detector.MAX_READ)
    loop = asyncio.get_running_loop()
    try:
        return len(await detector._read(reader, TIMEOUT, loop.time() + TIMEOUT))
    finally:
        writer.transport.abort()


async def host_deadline() -> dict[str, Any]:
    """Six silent ports on 127.0.0.2 (each would take ~4 s) and an SSH banner on 127.0.0.3."""
    targets = [("127.0.0.2", port) for port in range(9200, 9206)] + [("127.0.0.3", 22)]
    found, seconds = await timed(Detector(concurrency=16, timeout=TIMEOUT).detect_all(targets, host_deadline=1.5))
    await asyncio.sleep(0.5)  # cancelled exchanges abort their connections on the next turns
    return {"found": {f"{ip}:{port}": info and info.service for (ip, port), info in found.items()},
            "seconds": seconds, "left_open": open_connections}


async def scan_deadline() -> dict[str, Any]:
    """identify() over: an SSH host, a tarpit with an SSH server, then six hosts of silent ports,
    one port at a time, each host's deadline 1 s, the scan's 4 s."""
    identify_module.HOST_DEADLINE_MIN_S = 0.5  # the test's own budget: seconds, not minutes

    def host(ip: str, ports: range) -> Host:
        h = Host(int.from_bytes(bytes(map(int, ip.split("."))), "big"), up=True)
        h.tcp.probed = len(ports)
        for port in ports:
            h.tcp.add_open(port, Fingerprint(64, 65535, 0, b""))
        return h

    # 127.0.0.4 answered on each of the 100 ports probed: a tarpit, though its port 22 speaks SSH.
    hosts = [host("127.0.0.3", range(22, 23)), host("127.0.0.4", range(1, 101))]
    hosts += [host(f"127.0.0.{10 + i}", range(9200, 9206)) for i in range(6)]
    slow = Detector(concurrency=1, per_host=1, timeout=TIMEOUT)
    _, seconds = await timed(identify_module.identify(hosts, slow, ask_targets=True, host_timeout_s=1.0))
    return {"services": {dotted(h): {str(p): i.service for p, i in h.services.items()} for h in hosts},
            "tarpit": [dotted(h) for h in hosts if h.tarpit], "seconds": seconds}


def dotted(h: Host) -> str:
    return ".".join(str(b) for b in h.ip.to_bytes(4, "big"))


async def main(directory: Path) -> None:
    servers: list[tuple[str, int, Handler, ssl.SSLContext | None]] = [
        ("127.0.0.1", 9100, drip(), None),  # a banner that never ends, slowly
        ("127.0.0.1", 8080, drip(b"HTTP/1.0 200 OK\r\nServer: drip\r\n", after_request=True), None),
        ("127.0.0.1", 9101, endless, None),  # a banner that never ends, fast
        ("127.0.0.1", 443, banner(b"HTTP/1.0 200 OK\r\n\r\n"), tls_chain(directory, 40)),
        ("127.0.0.1", 8443, silent, None),  # a TLS port whose handshake never starts
        ("127.0.0.3", 22, banner(SSH), None),
        ("127.0.0.4", 22, banner(SSH), None),
    ]
    servers += [("127.0.0.2", port, silent, None) for port in range(9200, 9206)]
    servers += [(f"127.0.0.{10 + i}", port, silent, None) for i in range(6) for port in range(9200, 9206)]
    for ip, port, handler, context in servers:
        await asyncio.start_server(handler, ip, port, ssl=context)
    out = {str(port): await one_port(port) for port in (9100, 8080, 9101, 443, 8443)}
    out["read_cap"] = await read_cap(9101)
    out["host_deadline"] = await host_deadline()
    out["scan_deadline"] = await scan_deadline()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
