"""Runs inside the e2e test's network namespace, where snmpd and the lab's responders serve
127.0.0.1: query_names on them, on a closed address, on mute and garbage-spewing UDP servers of
its own (127.0.0.3, 127.0.0.4), under asyncio and uvloop. Prints one JSON document.
Usage: nsnames.py
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import uvloop

from netscand.profiling import names
from netscand.profiling.names.base import NameQuery, Reply

RECORDED = Path(__file__).parent / "recorded"
PORTS = (5353, 137, 161)
received: Counter[tuple[str, int]] = Counter()
in_flight = 0
most_in_flight = 0


class Mute(asyncio.DatagramProtocol):
    """Counts what arrives and never answers."""

    def __init__(self, where: tuple[str, int]) -> None:
        self.where = where

    def datagram_received(self, data: bytes, addr: Any) -> None:
        received[self.where] += 1


class Spew(asyncio.DatagramProtocol):
    """Answers every query with garbage and net-snmp's recorded answer to another request-id."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.rng = random.Random(2)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        for reply in (self.rng.randbytes(200), data, (RECORDED / "snmp-netsnmp.bin").read_bytes()):
            self.transport.sendto(reply, addr)  # type: ignore[attr-defined]


async def ticker(gaps: list[float]) -> None:
    """Measures the event loop's responsiveness while queries run."""
    last = time.monotonic()
    while True:
        await asyncio.sleep(0.01)
        now = time.monotonic()
        gaps.append(now - last)
        last = now


def counting(ask: Callable[..., Awaitable[Reply | None]]) -> Callable[..., Awaitable[Reply | None]]:
    """ask, counting how many calls run at once (query_names looks ask up at call time)."""

    async def counted(ip: str, query: NameQuery, timeout: float, retries: int) -> Reply | None:
        global in_flight, most_in_flight
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        try:
            return await ask(ip, query, timeout, retries)
        finally:
            in_flight -= 1

    return counted


async def timed(call: Coroutine[Any, Any, dict[str, names.HostNames]]) -> dict[str, Any]:
    started = time.monotonic()
    found = await call
    return {"found": {ip: dataclasses.asdict(host) for ip, host in found.items()},
            "elapsed": time.monotonic() - started}


def send_garbage() -> None:
    """The responders must shrug this off and answer the queries that follow."""
    rng = random.Random(1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for port in (5353, 137):
            for size in (0, 1, 12, 50, 512, 9000):
                sock.sendto(rng.randbytes(size), ("127.0.0.1", port))


async def main() -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    for port in PORTS:
        await loop.create_datagram_endpoint(lambda port=port: Mute(("127.0.0.3", port)),  # type: ignore[misc]
                                            local_addr=("127.0.0.3", port))
        await loop.create_datagram_endpoint(Spew, local_addr=("127.0.0.4", port))
    gaps: list[float] = []
    tick = asyncio.create_task(ticker(gaps))
    out = {
        "both": await timed(names.query_names(["127.0.0.1", "127.0.0.2"], timeout=1.0, retries=1)),
        "closed": await timed(names.query_names(["127.0.0.2"], timeout=1.0, retries=1)),
        "mute": await timed(names.query_names(["127.0.0.3", "127.0.0.4"], timeout=0.3, retries=2)),
    }
    out["received"] = {f"{ip}:{port}": count for (ip, port), count in received.items()}
    names.ask = counting(names.ask)  # type: ignore[assignment]
    out["limited"] = await timed(names.query_names(["127.0.0.3", "127.0.0.4"], timeout=0.1, retries=0,
                                                   concurrency=2))
    out["most_in_flight"] = most_in_flight
    tick.cancel()
    out["max_loop_gap"] = max(gaps)
    return out


if __name__ == "__main__":
    send_garbage()
    result = asyncio.run(main())
    result["uvloop"] = uvloop.run(timed(names.query_names(["127.0.0.1", "127.0.0.2"], timeout=1.0, retries=1)))
    print(json.dumps(result))
