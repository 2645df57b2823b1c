"""Runs inside test_udp_detect's network namespace, where real memcached (UDP on) and tftpd-hpa
serve 127.0.0.1: detect_udp on them, on a closed address, on a mute and a garbage-spewing UDP
server of its own. Prints one JSON document. Usage: nsudp.py TIMEOUT RETRIES
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from netscand.profiling.udp import detect_udp

RECORDED = Path(__file__).parent / "recorded"
received: Counter[str] = Counter()


class Mute(asyncio.DatagramProtocol):
    """Counts what arrives and never answers."""

    def datagram_received(self, data: bytes, addr: Any) -> None:
        received["mute"] += 1


class Spew(asyncio.DatagramProtocol):
    """Answers with garbage, the query itself, and memcached's recorded answer to another id."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.rng = random.Random(3)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        for reply in (self.rng.randbytes(300), data, (RECORDED / "memcached.bin").read_bytes()):
            self.transport.sendto(reply, addr)  # type: ignore[attr-defined]


async def timed(targets: list[tuple[str, int, bool]], timeout: float, retries: int) -> dict[str, Any]:
    started = time.monotonic()
    found = await detect_udp(targets, timeout=timeout, retries=retries)
    return {"elapsed": time.monotonic() - started,
            "found": {f"{ip}:{port}": dataclasses.asdict(info) for (ip, port), info in found.items()}}


async def main(timeout: float, retries: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Mute, local_addr=("127.0.0.3", 53))
    await loop.create_datagram_endpoint(Spew, local_addr=("127.0.0.4", 11211))
    return {
        "real": await timed([("127.0.0.1", 11211, True), ("127.0.0.1", 69, False)], timeout, retries),
        "closed": await timed([("127.0.0.2", 123, False), ("127.0.0.2", 53, False)], timeout, retries),
        "mute": await timed([("127.0.0.3", 53, False)], timeout, retries),
        "spew": await timed([("127.0.0.4", 11211, True)], timeout, retries),
        "received": dict(received),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(float(sys.argv[1]), int(sys.argv[2])))))
