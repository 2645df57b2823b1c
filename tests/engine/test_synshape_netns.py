"""The kernel-shaped SYN against the kernel's own, in a throwaway pair of namespaces joined by a
veth (none of the machine's interfaces): a real connect() SYN read off the veth equals, field
by field, what synshape captures over loopback and what tcp_syn_kernel sends; the capture puts
nothing on the veth; and a worker's receive filter is rebuilt for a plan's own source ports."""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import subprocess
import time
from collections.abc import Iterator

import dpkt
import pytest

from netscand.engine import plan as plans
from netscand.engine import synshape
from netscand.engine.probes import tcp_syn, tcp_syn_kernel
from netscand.engine.probes.tcp_syn_kernel import TcpSynKernel
from netscand.engine.shm import Shared
from netscand.engine.worker import Worker
from netscand.lab.namespaces import inside
from tests.engine.links import PairLink
from tests.engine.solo import GUARD
from tests.engine.test_bpf import run as filter_keeps

pytestmark = pytest.mark.lab

A_IP, B_IP = "198.19.254.1", "198.19.254.2"
ETH_P_ALL = 0x0003  # only a tap of every protocol sees frames going out


@pytest.fixture
def pair(require_root: None) -> Iterator[tuple[str, str]]:
    """Namespaces a and b, a's veth "va" to b's "vb", addresses of the lab's block, nothing else."""
    tag = f"{os.getpid()}-{time.monotonic_ns() % 10**6}"
    a, b = f"t-sa-{tag}", f"t-sb-{tag}"
    script = [["netns", "add", a], ["netns", "add", b],
              ["link", "add", "va", "netns", a, "type", "veth", "peer", "name", "vb", "netns", b],
              ["-n", a, "addr", "add", f"{A_IP}/30", "dev", "va"], ["-n", b, "addr", "add", f"{B_IP}/30", "dev", "vb"],
              ["-n", a, "link", "set", "lo", "up"], ["-n", b, "link", "set", "lo", "up"],
              ["-n", a, "link", "set", "va", "up"], ["-n", b, "link", "set", "vb", "up"]]
    try:
        for argv in script[:2]:
            subprocess.run(["ip", *argv], check=True)
        for name in (a, b):  # no IPv6 chatter (router solicitations) on the veth: a counts what it sends
            for conf in ("all", "default"):
                subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw", f"net.ipv6.conf.{conf}.disable_ipv6=1"],
                               check=True)
        for argv in script[2:]:
            subprocess.run(["ip", *argv], check=True)
        yield a, b
    finally:
        for name in (a, b):
            subprocess.run(["ip", "netns", "delete", name], check=False)


def kernel_syn(port: int) -> bytes:
    """The SYN of a real connect() from a to b's closed `port`, as it left va."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as cap, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as conn:
        cap.bind(("va", ETH_P_ALL))
        conn.setblocking(False)
        assert conn.connect_ex((B_IP, port)) in (0, errno.EINPROGRESS)
        sport = conn.getsockname()[1]
        deadline = time.monotonic() + 5
        while select.select([cap], [], [], max(deadline - time.monotonic(), 0))[0]:
            frame = cap.recv(2048)
            eth = dpkt.ethernet.Ethernet(frame)
            if isinstance(eth.data, dpkt.ip.IP) and isinstance(eth.data.data, dpkt.tcp.TCP) \
                    and eth.data.data.sport == sport and eth.data.data.flags == 0x02:
                return frame
    raise AssertionError("no SYN of connect() seen on va")


def tx_packets(netns: str, ifname: str) -> int:
    out = subprocess.run(["ip", "-n", netns, "-j", "-s", "link", "show", ifname], check=True,
                         capture_output=True, text=True).stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])


def kernel_plan(ifindex: int, slot: int = 1, lo: int = 32768, hi: int = 60999) -> plans.Plan:
    return plans.Plan(gen=5 + slot, kind=tcp_syn_kernel.PROBE.kind, slot=slot, share=1, retries=0,
                      key=b"z" * 16, ifindex=ifindex, src_ip=int.from_bytes(socket.inet_aton(A_IP), "big"),
                      src_mac=b"\2" * 6, sport_base=61440 + (slot << 10), rate=10.0, timeout_init_ms=500,
                      timeout_min_ms=100, timeout_max_ms=1000, shard_size=1,
                      hosts=(int.from_bytes(socket.inet_aton(B_IP), "big"),), macs=(b"\3" * 6,), ports=(9,),
                      gap_ms=200, sport_lo=lo, sport_hi=hi)


def fields(frame: bytes) -> dict[str, object]:
    """What a signature rule can test of a SYN: all but addresses, ports, sequence, IP ID, TSval
    and the checksums."""
    ip = dpkt.ethernet.Ethernet(frame).data
    tcp = ip.data
    spans = synshape.option_spans(tcp.opts)
    ts = next(at for at, kind, _ in spans if kind == synshape.TS_KIND)
    return {"ip version/ihl": (ip.v, ip.hl), "tos": ip.tos, "length": ip.len, "df": ip.df, "mf": ip.mf,
            "frag": ip.offset, "ttl": ip.ttl, "proto": ip.p, "ip options": ip.opts,
            "tcp offset": tcp.off, "flags": tcp.flags, "window": tcp.win, "urgent": tcp.urp, "ack": tcp.ack,
            "option kinds": [(k, n) for _, k, n in spans],
            "options but TSval": tcp.opts[: ts + 2] + tcp.opts[ts + 6 :]}


def test_the_shaped_syn_is_the_kernels_connect_syn_field_by_field(pair: tuple[str, str]) -> None:
    a, _ = pair
    with inside(a):
        ifindex = socket.if_nametoindex("va")
        real = kernel_syn(9)
        sent_before = tx_packets(a, "va")
        shape = synshape.capture(synshape.mtu(ifindex) - synshape.HEADERS)
        assert tx_packets(a, "va") == sent_before  # the capture stayed on loopback
        probe = TcpSynKernel(kernel_plan(ifindex))  # its own capture, for va's MTU
        ours = bytes(probe.frame(0, 0, 123456))
    assert fields(ours) == fields(real)
    assert (shape.ttl, shape.tos, shape.df, shape.window, shape.flags) == \
        (fields(real)["ttl"], 0, 1, fields(real)["window"], 0x02)
    mss = dpkt.ethernet.Ethernet(real).data.data.opts[2:4]
    assert int.from_bytes(mss, "big") == 1460 and shape.options[2:4] == mss  # va's MTU, not lo's


def test_no_kernel_syn_to_shape_probes_by_refuses_the_capture(pair: tuple[str, str]) -> None:
    a, _ = pair
    subprocess.run(["ip", "-n", a, "link", "set", "lo", "down"], check=True)
    with inside(a), pytest.raises(OSError):
        synshape.capture(1460)


def test_the_receive_filter_is_rebuilt_for_a_plans_own_source_ports(pair: tuple[str, str]) -> None:
    a, _ = pair
    link = PairLink()
    with inside(a):
        ifindex = socket.if_nametoindex("va")
        shared = Shared(1)
        worker = Worker(shared, 0, GUARD, lambda: GUARD, link=link)
        unpaced = plans.Plan(**{**kernel_plan(ifindex, slot=0).__dict__, "kind": tcp_syn.PROBE.kind, "gap_ms": 0,
                                "sport_lo": 0, "sport_hi": 0})
        plans.write(shared.plans[0], unpaced)
        worker.intake.refresh()
        assert len(link.programs) == 1
        plans.write(shared.plans[1], kernel_plan(ifindex, slot=1))
        worker.intake.refresh()
        assert len(link.programs) == 2  # widened: the paced plan's ports
        plans.write(shared.plans[2], kernel_plan(ifindex, slot=2, lo=40000, hi=50000))
        worker.intake.refresh()
        assert len(link.programs) == 2  # covered already: left alone
        assert set(worker.plans) == {0, 1, 2}
        plans.release(shared.plans[1])
        worker.intake.refresh()
        assert len(link.programs) == 3  # shrunk to the live plan's 40000-50000
        plans.release(shared.plans[2])
        worker.intake.refresh()
        assert len(link.programs) == 4 and link.programs[3] == link.programs[0]  # none left: as before
    before, after, narrower = link.programs[:3]
    for dport, kept_before in ((40000, False), (61440, True), (60999, False)):
        frame = to_scanner(dpkt.tcp.TCP(sport=9, dport=dport, flags=0x12))
        assert bool(filter_keeps(before, frame)) == kept_before
        assert filter_keeps(after, frame)
        assert bool(filter_keeps(narrower, frame)) == (dport != 60999)
    # In the range only what answers a SYN: SYN-ACK, RST (with or without ACK); not the ACKs and
    # data of the kernel's own connections there, nor its own SYNs, nor UDP.
    for flags, kept in ((0x12, True), (0x04, True), (0x14, True), (0x10, False), (0x18, False), (0x02, False),
                        (0x11, False)):
        assert bool(filter_keeps(after, to_scanner(dpkt.tcp.TCP(sport=9, dport=40000, flags=flags)))) == kept, flags
    assert not filter_keeps(after, to_scanner(dpkt.udp.UDP(sport=53, dport=40000), p=17))


def to_scanner(segment: dpkt.Packet, p: int = 6) -> bytes:
    ip = dpkt.ip.IP(src=socket.inet_aton(B_IP), dst=socket.inet_aton(A_IP), p=p, data=segment)
    return bytes(dpkt.ethernet.Ethernet(data=ip))
