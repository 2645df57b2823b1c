"""The kernel's SYN captured for loopback at lo's default MTU (65536), in a throwaway namespace
with only lo: Linux refuses a TCP_MAXSEG above 32767, so an MSS at or above lo's own is left to
the kernel (a scan of 127.0.0.1 is not refused), one between gets 32767, one below is set."""

from __future__ import annotations

import socket
import subprocess

import pytest

from netscand.engine import plan as plans
from netscand.engine import synshape
from netscand.engine.probes import tcp_syn_kernel
from netscand.engine.probes.tcp_syn_kernel import TcpSynKernel
from netscand.lab.namespaces import inside

pytestmark = pytest.mark.lab


def mss_of(shape: synshape.SynShape) -> int:
    at = next(at for at, kind, _ in synshape.option_spans(shape.options) if kind == 2)
    return int.from_bytes(shape.options[at + 2 : at + 4], "big")


def test_lo_at_its_default_mtu_gives_the_kernels_mss_and_clamps_what_linux_refuses(netns: str) -> None:
    out = subprocess.run(["ip", "-n", netns, "-o", "link", "show", "lo"], check=True, capture_output=True,
                         text=True).stdout
    assert " mtu 65536 " in out  # the kernel's default, as in a host's own namespace
    with inside(netns):
        assert synshape.loopback_mss() == 65495
        assert mss_of(synshape.capture(65495)) == 65495  # lo's own: no TCP_MAXSEG (EINVAL above 32767)
        assert mss_of(synshape.capture(40000)) == synshape.MAXSEG_MAX  # the nearest Linux takes
        assert mss_of(synshape.capture(32767)) == 32767
        assert mss_of(synshape.capture(1460)) == 1460
        lo = socket.if_nametoindex("lo")
        plan = plans.Plan(gen=1, kind=tcp_syn_kernel.PROBE.kind, slot=0, share=1, retries=0, key=b"l" * 16,
                          ifindex=lo, src_ip=0x7F000001, src_mac=b"\0" * 6, sport_base=61440, rate=10.0,
                          timeout_init_ms=500, timeout_min_ms=100, timeout_max_ms=1000, shard_size=1,
                          hosts=(0x7F000001,), macs=(b"\0" * 6,), ports=(9,), gap_ms=200, sport_lo=32768,
                          sport_hi=60999, flags=plans.FLAG_LOOPBACK)
        probe = TcpSynKernel(plan)  # a stealth scan of 127.0.0.1: built, not refused
        frame = bytes(probe.frame(0, 0, 7))
    assert mss_of(synshape.SynShape(0, 0, False, 0, 0, frame[54:])) == 65495
