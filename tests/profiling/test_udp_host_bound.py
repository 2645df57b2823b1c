"""UDP detection's bound per host, over real loopback sockets: a host whose ports all stay mute
(or all answer) costs its own deadline, not the step's, and only `per_host` exchanges at once."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from netscand.profiling.udp import detect
from netscand.profiling.udp.detect import PROBES, detect_udp, probes_for


@pytest.fixture
def mute_ports() -> Iterator[list[int]]:
    """Bound UDP ports on 127.0.0.1 that read nothing and answer nothing."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(6)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    yield [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()


def test_a_host_ends_at_its_deadline_with_at_most_per_host_exchanges_at_once(
        mute_ports: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    running, most = 0, 0
    real = detect.exchange

    async def counted(*args: object) -> object:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            return await real(*args)  # type: ignore[arg-type]
        finally:
            running -= 1

    monkeypatch.setattr(detect, "exchange", counted)
    targets = [("127.0.0.1", port, True) for port in mute_ports]  # open: every probe, 7 per port
    start = time.monotonic()
    found = asyncio.run(detect_udp(targets, timeout=1.0, retries=1, per_host=3, host_deadline=0.5))
    took = time.monotonic() - start
    assert found == {} and 0.5 <= took < 1.5  # 42 mute exchanges of 2 s each, cut at the deadline
    assert most == 3


def test_a_port_the_scan_recognised_by_its_payload_gets_no_unrelated_probes() -> None:
    assert probes_for(500, True, recognised=(500, 5683)) == ()
    assert probes_for(40000, True, recognised=(500, 5683)) == PROBES
    assert probes_for(40000, False) == ()
    assert [p.name for p in probes_for(53, True, recognised=(53,))] == ["dns"]
