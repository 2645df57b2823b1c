"""The kernel-shaped SYN's frames and reply parsing, from a given shape (no capture): source
ports even and in range, IP ID not the sequence's, valid checksums, the tick through TSval and
back through a SYN-ACK's TSecr, TSval a 1 kHz count; a RST times nothing, a forged TSecr only
misreads the tick."""

from __future__ import annotations

import struct

import dpkt
import pytest

from netscand.engine import frames
from netscand.engine import plan as plans
from netscand.engine.clock import TICK_MASK
from netscand.engine.cookie import cookie
from netscand.engine.probes import tcp_syn_kernel
from netscand.engine.probes.tcp_syn_kernel import TcpSynKernel, ts_offset
from netscand.engine.shm import S_CLOSED, S_OPEN
from netscand.engine.synshape import SynShape, option_spans

SRC_MAC, HOST_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000010")
SRC_IP, HOSTS = 0xC6120001, (0xC6120010, 0xC6120011)
# A Linux 6.x SYN: MSS 1460, SACK permitted, timestamps, NOP, window scale 10.
SHAPE = SynShape(64, 0, True, 64240, 0x02, bytes.fromhex("020405b40402080a1234567800000000010303" "0a"))


def make_plan(lo: int = 32768, hi: int = 60999) -> plans.Plan:
    return plans.Plan(gen=3, kind=tcp_syn_kernel.PROBE.kind, slot=2, share=1, retries=1, key=b"s" * 16,
                      ifindex=1, src_ip=SRC_IP, src_mac=SRC_MAC, sport_base=61440 + 2048, rate=100.0,
                      timeout_init_ms=1000, timeout_min_ms=100, timeout_max_ms=3000, shard_size=6,
                      hosts=HOSTS, macs=(HOST_MAC,) * 2, ports=(22, 80, 443), gap_ms=3500,
                      sport_lo=lo, sport_hi=hi)


def parse(frame: bytes) -> dpkt.ethernet.Ethernet:
    return dpkt.ethernet.Ethernet(bytes(frame))


def test_frames_carry_the_shape_and_vary_what_a_connection_varies() -> None:
    probe = TcpSynKernel(make_plan(), SHAPE)
    seen, seen_ts = [], []
    for tick in range(1000, 1040):
        for host in range(2):
            for port in range(3):
                frame = bytes(probe.frame(host, port, tick))
                assert frames.checksum_ok(frame)
                ip = parse(frame).data
                tcp = ip.data
                assert (ip.ttl, ip.tos, ip.df, ip.mf, ip.offset) == (64, 0, 1, 0, 0)
                assert (tcp.flags, tcp.win, tcp.urp, tcp.ack) == (0x02, 64240, 0, 0)
                assert [(k, n) for _, k, n in option_spans(tcp.opts)] == [(k, n) for _, k, n in option_spans(SHAPE.options)]
                assert tcp.opts[:8] == SHAPE.options[:8] and tcp.opts[16:] == SHAPE.options[16:]
                tsval, tsecr = struct.unpack_from("!II", tcp.opts, 8)
                assert tsecr == 0 and 0 <= (tsval - ts_offset(b"s" * 16, HOSTS[host]) - 4 * tick) % 2**32 < 4
                seen_ts.append(tsval)
                assert 32768 <= tcp.sport <= 60999 and tcp.sport % 2 == 0
                assert tcp.seq == cookie(b"s" * 16, 2, HOSTS[host], (22, 80, 443)[port], tcp.sport)
                seen.append((tcp.sport, ip.id, tcp.seq >> 16))
    sports, ipids = {s for s, _, _ in seen}, {i for _, i, _ in seen}
    assert len(sports) > 200 and len(ipids) > 200  # spread, not one scanner's port or counter
    assert sum(i == hi for _, i, hi in seen) < 3  # the IP ID is not the sequence's top half (tcp_syn's)
    assert {t % 4 for t in seen_ts} == {0, 1, 2, 3}  # a 1 ms clock's values, not 4 ms steps


def test_two_syns_to_a_host_show_a_1_khz_clock_between_them() -> None:
    probe = TcpSynKernel(make_plan(), SHAPE)
    steps = set()
    for tick in range(5000, 5200, 7):
        a = struct.unpack_from("!I", parse(probe.frame(0, 0, tick)).data.data.opts, 8)[0]
        b = struct.unpack_from("!I", parse(probe.frame(0, 1, tick + 875)).data.data.opts, 8)[0]  # 3.5 s later
        steps.add((b - a) % 2**32)
    assert all(3497 <= step <= 3503 for step in steps)  # 3500 ms, to the ms within each tick
    assert len({step % 4 for step in steps}) > 1  # not always a multiple of 4 ms


def reply(probe: TcpSynKernel, frame: bytes, flags: int, opts: bytes) -> bytes:
    sent = parse(frame).data
    syn = sent.data
    tcp = dpkt.tcp.TCP(sport=syn.dport, dport=syn.sport, seq=7, ack=syn.seq + 1, flags=flags, win=65160,
                       off=5 + len(opts) // 4, opts=opts)
    ip = dpkt.ip.IP(src=sent.dst, dst=sent.src, p=6, ttl=61, data=tcp)
    return bytes(dpkt.ethernet.Ethernet(src=HOST_MAC, dst=SRC_MAC, data=ip))


@pytest.mark.parametrize("tick", [5, 1023, 1024 + 77, 2**31 + 9])
def test_a_syn_acks_tsecr_gives_back_the_send_tick(tick: int) -> None:
    probe = TcpSynKernel(make_plan(), SHAPE)
    frame = bytes(probe.frame(1, 2, tick))
    tsval = struct.unpack_from("!I", parse(frame).data.data.opts, 8)[0]
    ts = b"\x01\x01\x08\x0a" + struct.pack("!II", 99, tsval)
    answer = probe.answer(reply(probe, frame, 0x12, b"\x02\x04\x05\xb4" + ts))
    assert answer is not None and (answer.host, answer.port, answer.state) == (1, 2, S_OPEN)
    assert answer.tick == tick & TICK_MASK
    for delta, tick_read in ((4, tick + 1), (-4, tick - 1), (4 * (TICK_MASK + 1), tick)):
        forged = b"\x01\x01\x08\x0a" + struct.pack("!II", 99, (tsval + delta) & 0xFFFFFFFF)
        got = probe.answer(reply(probe, frame, 0x12, forged))
        # Still this probe's answer (the cookie says so); only its tick is misread.
        assert got is not None and (got.host, got.port, got.state) == (1, 2, S_OPEN)
        assert got.tick == tick_read & TICK_MASK
    rst = probe.answer(reply(probe, frame, 0x14, b""))
    assert rst is not None and (rst.state, rst.tick) == (S_CLOSED, -1)


def test_a_range_of_one_odd_port_is_that_port() -> None:
    probe = TcpSynKernel(make_plan(40001, 40001), SHAPE)
    assert parse(probe.frame(0, 0, 1)).data.data.sport == 40001


def test_no_source_port_range_is_a_plan_error() -> None:
    with pytest.raises(plans.PlanError, match="source port range"):
        TcpSynKernel(make_plan(0, 0), SHAPE)
