"""identify() confirms a rate-limited host's silent UDP ports, over loopback (which sends every
port unreachable): the closed ones become closed, one that answers open, and the host is no
longer flagged."""

from __future__ import annotations

import asyncio
import socket

from netscand.profiling.services import Detector
from netscand.scan.identify import identify
from netscand.scan.result import Host, ScanResult
from tests.scan.test_udp_result import valid

LOOPBACK = 0x7F000001


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"hi", addr)  # type: ignore[attr-defined]


def limited_host(probed: list[int]) -> Host:
    """Probed on `probed`: the first 2 answered closed, the other 6 stayed silent."""
    h = Host(LOOPBACK, up=True)
    states = h.states("udp")
    states.probed = len(probed)
    states.tallies[(0, 0)] = (2, 0)
    states.closed.update(probed[:2])
    return h


def test_identify_confirms_a_rate_limited_hosts_silent_ports() -> None:
    async def run() -> tuple[Host, int]:
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        echo = int(transport.get_extra_info("sockname")[1])
        probed = [free_port() for _ in range(7)] + [echo]
        host = limited_host(probed)
        assert host.states("udp").icmp_limited
        try:
            await identify([host], Detector(timeout=1.0), ask_targets=True, host_timeout_s=30, udp_ports=probed)
        finally:
            transport.close()
        return host, echo

    host, echo = asyncio.run(run())
    states = host.states("udp")
    assert (states.closed_count, states.silent_count, states.open_count) == (7, 0, 1)
    result = ScanResult()
    result.hosts[host.ip] = host
    device = valid(result.device(host))
    assert {p["port"]: p["state"] for p in device["ports"]} == {echo: "open", **dict.fromkeys(states.closed, "closed")}
    assert "udp_icmp_limited" not in device and "not_shown_udp" not in device
