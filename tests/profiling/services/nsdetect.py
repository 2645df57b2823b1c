"""Runs inside the e2e test's network namespace: replay servers, then detect() on them and on the
real daemons the test started. Prints one JSON document. Usage: nsdetect.py CERT KEY PORT...

Replay servers (all on 127.0.0.1) serve recorded bytes, silence, garbage and hostile lines, so
the connection logic is tested on what real daemons can't be made to do on demand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from netscand.profiling.services import Detector, ServiceInfo
from netscand.profiling.services import detector as detect_module

RECORDED = Path(__file__).parent / "recorded"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
in_flight = 0
most_in_flight = 0


def banner(data: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
        writer.close()

    return handle


def answer(data: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(data)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a probe that isn't HTTP: hang up, like a real server would
        writer.close()

    return handle


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # until the client gives up
    writer.close()


def counting(detect: Callable[..., Awaitable[ServiceInfo | None]]) -> Callable[..., Awaitable[ServiceInfo | None]]:
    """detect, counting how many calls run at once (Detector looks detect up at call time)."""

    async def counted(*args: object, **kwargs: object) -> ServiceInfo | None:
        global in_flight, most_in_flight
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        try:
            return await detect(*args, **kwargs)
        finally:
            in_flight -= 1

    return counted


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def ticker(gaps: list[float]) -> None:
    """Measures the event loop's responsiveness while detection runs."""
    last = time.monotonic()
    while True:
        await asyncio.sleep(0.01)
        now = time.monotonic()
        gaps.append(now - last)
        last = now


def wait_listening(ports: list[int]) -> None:
    deadline = time.monotonic() + 20
    for port in ports:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"port {port} never listened")
                time.sleep(0.1)


async def main(cert: str, key: str, real_ports: list[int]) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    https_page = (RECORDED / "https-nginx.bin").read_bytes()
    replay: dict[int, tuple[Handler, ssl.SSLContext | None]] = {
        2222: (banner((RECORDED / "ssh-openssh.bin").read_bytes()), None),
        5900: (banner(b"RFB 003.008\n"), None),
        8443: (answer(https_page), context),  # a TLS port by its number
        9000: (answer((RECORDED / "http-nginx.bin").read_bytes()), None),
        9001: (silent, None),
        9002: (banner(random.Random(1).randbytes(4096)), None),
        9003: (hang_up, None),
        9004: (answer(https_page), context),  # TLS on a port that gives no hint
        9005: (banner(b"SSH-2.0-" + b"A" * 1024 * 1024 + b"\r\n"), None),
    }
    for port, (handler, tls_context) in replay.items():
        await asyncio.start_server(handler, "127.0.0.1", port, ssl=tls_context)
    wait_listening(real_ports)
    gaps: list[float] = []
    tick = asyncio.create_task(ticker(gaps))
    targets = [("127.0.0.1", port) for port in [*replay, *real_ports, 9]]  # nothing listens on 9
    found = await Detector(concurrency=16, timeout=2.0).detect_all(targets)
    # Concurrency limit: six ports on the silent server, two at a time.
    detect_module.detect = counting(detect_module.detect)  # type: ignore[assignment]
    limited = Detector(concurrency=2, timeout=0.3)
    await limited.detect_all([("127.0.0.1", 9001)] * 3 + [("127.0.0.1", 9003)] * 3)
    tick.cancel()
    out = {
        "found": {str(port): info and dataclasses.asdict(info) for (_, port), info in found.items()},
        "most_in_flight": most_in_flight,
        "max_loop_gap": max(gaps),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]]))
