"""profiling/confirm.py over loopback: what a port says to one datagram (datagram.knock), and
the pacing: a burst at once, then one port every interval, per host; hosts side by side up to
the bound; each host's asking ends at its deadline. Loopback sends every port unreachable
(Linux exempts it from icmp_ratelimit), so closed ports answer at once."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time

from netscand.profiling.confirm import Answers, Pace, confirm
from netscand.profiling.datagram import knock

FAST = Pace(burst=2, interval=0.3, wait=0.2)


class Mute(asyncio.DatagramProtocol):
    """A bound port that answers nothing and notes when each datagram came."""

    def __init__(self) -> None:
        self.came: list[float] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.came.append(time.monotonic())


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"hi", addr)  # type: ignore[attr-defined]


async def bound(protocol: asyncio.DatagramProtocol) -> tuple[asyncio.DatagramTransport, int]:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(lambda: protocol,
                                                                             local_addr=("127.0.0.1", 0))
    return transport, int(transport.get_extra_info("sockname")[1])


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_knock_tells_open_closed_and_silent_apart() -> None:
    async def run() -> None:
        echo, open_port = await bound(Echo())
        mute, silent_port = await bound(Mute())
        try:
            assert await knock("127.0.0.1", open_port, b"x", timeout=1.0) == "open"
            assert await knock("127.0.0.1", closed_port(), b"", timeout=1.0) == "closed"
            started = time.monotonic()
            assert await knock("127.0.0.1", silent_port, b"", timeout=0.2) is None
            assert time.monotonic() - started < 0.5
        finally:
            echo.close()
            mute.close()
    asyncio.run(run())


def test_a_host_is_asked_a_burst_then_one_port_per_interval() -> None:
    async def run() -> None:
        mutes = [Mute() for _ in range(6)]
        transports, ports = zip(*[await bound(m) for m in mutes], strict=True)
        started = time.monotonic()
        try:
            found = await confirm({"127.0.0.1": [(p, b"") for p in ports]}, host_deadline=30, pace=FAST)
        finally:
            for t in transports:
                t.close()
        assert found == {} and time.monotonic() - started < 4 * 0.3 + 0.2 + 0.3
        came = [m.came[0] - started for m in mutes]  # each port asked once, in order
        assert all(len(m.came) == 1 for m in mutes) and came == sorted(came)
        assert came[1] < 0.1  # the burst: at once
        gaps = [b - a for a, b in itertools.pairwise(came[1:])]
        assert all(0.28 < gap < 0.45 for gap in gaps), gaps
    asyncio.run(run())


def test_closed_ports_are_confirmed_closed_and_hosts_run_side_by_side_up_to_the_bound() -> None:
    closed = [(closed_port(), b"") for _ in range(4)]
    asks = {ip: list(closed) for ip in ("127.0.0.1", "127.0.0.2", "127.0.0.3")}
    started = time.monotonic()
    found = asyncio.run(confirm(asks, host_deadline=30, pace=FAST))
    assert found == {(ip, port): "closed" for ip in asks for port, _ in closed}
    assert time.monotonic() - started < 1.0  # 2 intervals, not 6: the hosts overlap
    started = time.monotonic()
    asyncio.run(confirm(asks, host_deadline=30, pace=Pace(burst=2, interval=0.3, wait=0.2, hosts=1)))
    assert time.monotonic() - started >= 3 * 0.6  # one host at a time: 3 x 2 intervals


def test_a_host_stops_at_its_deadline_and_keeps_what_answered() -> None:
    closed = [(closed_port(), b"") for _ in range(20)]
    found: Answers = {}
    started = time.monotonic()
    asyncio.run(confirm({"127.0.0.1": closed}, host_deadline=1.0, pace=FAST, found=found))
    assert time.monotonic() - started < 1.5
    # The burst of 2, then one at 0.3, 0.6 and 0.9 s: 5 asked before the deadline.
    assert len(found) == 5 and set(found.values()) == {"closed"}
