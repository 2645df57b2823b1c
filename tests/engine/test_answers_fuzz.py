"""Property tests of everything the engine reads off the wire: any bytes give an Answer or None
(and a reason code from the structural check), never an exception; a genuine reply is still
matched; a matched reply whose checksum is wrong is dropped and counted.

Genuine replies are built with dpkt (an implementation of the protocols independent of ours),
then mutated (header lengths, total length, cuts, overwritten bytes) to reach the code paths past
the cookie check that random bytes alone rarely get to.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import NamedTuple

import dpkt
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from netscand.engine import frames
from netscand.engine import plan as plans
from netscand.engine.clock import TICK_BITS, TICK_MASK, WRAP_MS
from netscand.engine.cookie import cookie
from netscand.engine.probes import (
    PROBES as ALL_KINDS,
)
from netscand.engine.probes import (
    Answer,
    Probe,
    arp,
    icmp_echo,
    tcp_ack,
    tcp_syn,
    tcp_syn_kernel,
)
from netscand.engine.probes.base import NO_PORTS
from netscand.engine.shm import MALFORMED, PLAN_SLOTS, S_CLOSED, S_OPEN, S_UNREACH, S_UP
from netscand.scan.work import SPORT_BASE

SRC_MAC = bytes.fromhex("020000000001")
HOST_MAC = bytes.fromhex("020000000010")
SRC_IP = 0xC6120001
HOSTS = (0xC6120010, 0xC6120011, 0xC6120012)
PORTS = (22, 80, 443, 65535)
FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_plan(kind: int, slot: int = 1) -> plans.Plan:
    ports = PORTS if ALL_KINDS[kind].ports else NO_PORTS
    return plans.Plan(gen=9, kind=kind, slot=slot, share=1, retries=1, key=bytes(range(16)), ifindex=2,
                      src_ip=SRC_IP, src_mac=SRC_MAC, sport_base=61440, rate=100.0,
                      timeout_init_ms=100, timeout_min_ms=100, timeout_max_ms=100, shard_size=1024,
                      hosts=HOSTS, macs=(HOST_MAC,) * len(HOSTS), ports=ports, sport_lo=32768, sport_hi=60999)


# A Linux SYN's shape, for the kernel-shaped probe: its own build captures one in the worker.
LINUX_SYN = tcp_syn_kernel.synshape.SynShape(64, 0, True, 64240, 0x02, bytes.fromhex("020405b40402080a0000000000000000010303" "07"))
BUILD = {tcp_syn_kernel.PROBE.kind: lambda plan: tcp_syn_kernel.TcpSynKernel(plan, LINUX_SYN)}

# Every registered probe type's, each in a slot of its own as a worker's plans are (the cookie
# carries the slot) while there are slots enough.
PROBES: dict[int, Probe] = {ptype.kind: BUILD.get(ptype.kind, ptype.build)(make_plan(ptype.kind, slot % PLAN_SLOTS))
                            for slot, ptype in enumerate(ALL_KINDS.values())}


class Held(NamedTuple):
    """What frames.take() is handed: anything with a probe (the worker gives its PlanStates)."""

    probe: Probe


def eth(ip: dpkt.Packet, kind: int = 0x0800) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(src=HOST_MAC, dst=SRC_MAC, type=kind, data=ip))


def ipv4(src: int, proto: int, data: dpkt.Packet | bytes, ip_opts: bytes, ttl: int, ipid: int) -> dpkt.ip.IP:
    return dpkt.ip.IP(src=src.to_bytes(4, "big"), dst=SRC_IP.to_bytes(4, "big"), p=proto, ttl=ttl, id=ipid,
                      opts=ip_opts, hl=5 + len(ip_opts) // 4, data=data)


# -- strategies ------------------------------------------------------------------------------------
word_opts = st.integers(0, 10).map(lambda n: b"\x01" * (4 * n))  # NOP options, whole words
tcp_opts = st.integers(0, 10).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n))


@st.composite
def tcp_reply(draw: st.DrawFn) -> tuple[bytes, int, int, int]:
    """A SYN-ACK or RST answering a probe of the SYN plan: (frame, host, port, state)."""
    plan = PROBES[tcp_syn.PROBE.kind].plan
    host, port = draw(st.integers(0, len(HOSTS) - 1)), draw(st.integers(0, len(PORTS) - 1))
    tick = draw(st.integers(0, TICK_MASK))
    sport = plan.sport_base + tick
    c = cookie(plan.key, plan.slot, HOSTS[host], PORTS[port], sport)
    state = draw(st.sampled_from([S_OPEN, S_CLOSED]))
    flags = dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK if state == S_OPEN else dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK
    opts = draw(tcp_opts)
    tcp = dpkt.tcp.TCP(sport=PORTS[port], dport=sport, ack=(c + 1) & 0xFFFFFFFF, flags=flags,
                       win=draw(st.integers(0, 0xFFFF)), off=5 + len(opts) // 4, opts=opts,
                       data=draw(st.binary(max_size=40)))
    ip = ipv4(HOSTS[host], 6, tcp, draw(word_opts), draw(st.integers(1, 255)), draw(st.integers(0, 0xFFFF)))
    return eth(ip), host, port, state


@st.composite
def unreachable(draw: st.DrawFn) -> tuple[bytes, int, int, int]:
    """An ICMP unreachable from a router, quoting a SYN the plan sent (and maybe more of it)."""
    probe = PROBES[tcp_syn.PROBE.kind]
    host, port = draw(st.integers(0, len(HOSTS) - 1)), draw(st.integers(0, len(PORTS) - 1))
    sent = bytes(probe.frame(host, port, draw(st.integers(0, TICK_MASK))))[14:]
    quoted = sent[: draw(st.integers(28, len(sent)))]
    code = draw(st.sampled_from([1, 2, 3, 9, 10, 13]))
    icmp = dpkt.icmp.ICMP(type=3, code=code, data=dpkt.icmp.ICMP.Unreach(data=quoted))
    ip = ipv4(0xC61200FE, 1, icmp, draw(word_opts), draw(st.integers(1, 255)), 0)
    return eth(ip), host, port, S_UNREACH


@st.composite
def echo_reply(draw: st.DrawFn) -> tuple[bytes, int, int, int]:
    probe = PROBES[icmp_echo.PROBE.kind]
    host = draw(st.integers(0, len(HOSTS) - 1))
    sent = dpkt.ethernet.Ethernet(bytes(probe.frame(host, 0, draw(st.integers(0, TICK_MASK))))).data.data
    icmp = dpkt.icmp.ICMP(type=0, code=0, data=sent.data)
    ip = ipv4(HOSTS[host], 1, icmp, draw(word_opts), draw(st.integers(1, 255)), 0)
    return eth(ip), host, 0, S_UP


@st.composite
def ack_rst(draw: st.DrawFn) -> tuple[bytes, int, int, int]:
    probe = PROBES[tcp_ack.PROBE.kind]
    host, port = draw(st.integers(0, len(HOSTS) - 1)), draw(st.integers(0, len(PORTS) - 1))
    sent = dpkt.ethernet.Ethernet(bytes(probe.frame(host, port, draw(st.integers(0, TICK_MASK))))).data.data
    rst = dpkt.tcp.TCP(sport=sent.dport, dport=sent.sport, seq=sent.ack, flags=dpkt.tcp.TH_RST, off=5)
    ip = ipv4(HOSTS[host], 6, rst, draw(word_opts), draw(st.integers(1, 255)), 0)
    return eth(ip), host, port, S_UP


@st.composite
def arp_reply(draw: st.DrawFn) -> tuple[bytes, int, int, int]:
    host = draw(st.integers(0, len(HOSTS) - 1))
    reply = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REPLY, sha=HOST_MAC, spa=HOSTS[host].to_bytes(4, "big"),
                         tha=SRC_MAC, tpa=SRC_IP.to_bytes(4, "big"))
    return eth(reply, 0x0806) + draw(st.binary(max_size=18)), host, 0, S_UP  # trailer: Ethernet padding


GENUINE = {tcp_syn.PROBE.kind: st.one_of(tcp_reply(), unreachable()), tcp_ack.PROBE.kind: ack_rst(),
           icmp_echo.PROBE.kind: echo_reply(), arp.PROBE.kind: arp_reply()}
any_genuine = st.one_of(*GENUINE.values()).map(lambda g: g[0])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A genuine reply with what a broken stack or a hostile sender changes: header lengths
    (IP's IHL, TCP's data offset, a quoted header's IHL), IP's total length, a cut, bytes."""
    frame = bytearray(draw(any_genuine))
    for _ in range(draw(st.integers(1, 4))):
        what = draw(st.sampled_from(["ihl", "offset", "quoted_ihl", "total", "cut", "byte"]))
        ihl_at = 14
        l4 = 14 + (frame[ihl_at] & 0x0F) * 4 if len(frame) > ihl_at else 0
        if what == "ihl" and len(frame) > ihl_at:
            frame[ihl_at] = (frame[ihl_at] & 0xF0) | draw(st.integers(0, 15))
        elif what == "offset" and len(frame) > l4 + 12:
            frame[l4 + 12] = draw(st.integers(0, 15)) << 4
        elif what == "quoted_ihl" and len(frame) > l4 + 8:
            frame[l4 + 8] = (frame[l4 + 8] & 0xF0) | draw(st.integers(0, 15))
        elif what == "total" and len(frame) > 17:
            struct.pack_into("!H", frame, 16, draw(st.integers(0, 0xFFFF)))
        elif what == "cut":
            del frame[draw(st.integers(0, len(frame))):]
        elif what == "byte" and frame:
            frame[draw(st.integers(0, len(frame) - 1))] = draw(st.integers(0, 255))
    return bytes(frame)


@st.composite
def crafted_ipv4(draw: st.DrawFn) -> bytes:
    """Ethernet/IPv4 from scratch: any version, IHL, total length, protocol, data offset, cut."""
    version_ihl = draw(st.sampled_from([4, 4, 4, 0, 6, 15])) << 4 | draw(st.integers(0, 15))
    proto = draw(st.sampled_from([1, 6, 17, 0]))
    opts = draw(st.binary(min_size=0, max_size=40))
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", draw(st.sampled_from(PORTS)), 61440 + draw(st.integers(0, TICK_MASK)),
                         0, draw(st.integers(0, 0xFFFFFFFF)), draw(st.integers(0, 15)) << 4,
                         draw(st.sampled_from([0x12, 0x14, 0x04, 0x10])), 0, 0, 0)
    elif proto == 1:
        inner = bytes([draw(st.integers(0, 0xFF))]) + draw(st.binary(min_size=0, max_size=40))
        l4 = bytes([draw(st.sampled_from([0, 3, 11, 8])), draw(st.integers(0, 15)), 0, 0, 0, 0, 0, 0]) + inner
    else:
        l4 = draw(st.binary(max_size=40))
    total = draw(st.one_of(st.just(20 + len(opts) + len(l4)), st.integers(0, 0xFFFF)))
    header = struct.pack("!BBHHHBBH4s4s", version_ihl, 0, total, 0, 0, 64, proto, 0,
                         draw(st.sampled_from(HOSTS)).to_bytes(4, "big"), SRC_IP.to_bytes(4, "big"))
    frame = SRC_MAC + HOST_MAC + b"\x08\x00" + header + opts + l4
    return frame[: draw(st.integers(0, len(frame)))] if draw(st.booleans()) else frame


@st.composite
def truncated_arp(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(arp_reply())[0])
    if draw(st.booleans()):
        frame[18], frame[19] = draw(st.integers(0, 255)), draw(st.integers(0, 255))  # hlen, plen
    return bytes(frame[: draw(st.integers(0, len(frame)))])


hostile = st.one_of(st.binary(max_size=300), mutated(), crafted_ipv4(), truncated_arp())


# -- properties --------------------------------------------------------------------------------------
def assert_total(frame: bytes) -> None:
    """Every probe answers or not; the check gives a known reason; take() never raises and
    counts a malformed frame once."""
    for probe in PROBES.values():
        a = probe.answer(frame)
        assert a is None or isinstance(a, Answer)
        if a is not None:
            assert 0 <= a.host < len(probe.plan.hosts) and 0 <= a.port < len(probe.plan.ports)
    reason = frames.check(frame)
    assert 0 <= reason < len(MALFORMED)
    if reason == 0:
        frames.checksum_ok(frame)  # its precondition: a frame check() passed
    counts = [0] * len(MALFORMED)
    hit = frames.take(frame, [Held(p) for p in PROBES.values()], counts)
    assert sum(counts) <= 1
    if reason:
        assert hit is None and counts[reason] == 1


@FUZZ
@given(hostile)
def test_no_frame_raises(frame: bytes) -> None:
    assert_total(frame)


def test_the_frame_from_the_issue_is_counted_not_raised() -> None:
    """IPv4 ICMP with IHL=15 (40 bytes of NOP options) and a 1-byte ICMP payload."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x4F, 0, 61, 0, 0, 64, 1, 0, HOSTS[0].to_bytes(4, "big"),
                     SRC_IP.to_bytes(4, "big")) + b"\x01" * 40 + b"\x03"
    frame = SRC_MAC + HOST_MAC + b"\x08\x00" + ip
    assert_total(frame)
    assert MALFORMED[frames.check(frame)] == "truncated"
    assert all(p.answer(frame) is None for p in PROBES.values())


@FUZZ
@given(st.sampled_from(sorted(GENUINE)).flatmap(lambda k: st.tuples(st.just(k), GENUINE[k])))
def test_a_genuine_reply_is_matched(case: tuple[int, tuple[bytes, int, int, int]]) -> None:
    kind, (frame, host, port, state) = case
    probe = PROBES[kind]
    counts = [0] * len(MALFORMED)
    others = [Held(p) for k, p in PROBES.items() if k != kind]
    hit = frames.take(frame, [*others, Held(probe)], counts)
    assert counts == [0] * len(MALFORMED)
    assert hit is not None and hit[0].probe is probe
    assert (hit[1].host, hit[1].port, hit[1].state) == (host, port, state)


@st.composite
def damaged(draw: st.DrawFn) -> tuple[int, bytes]:
    """(kind, frame): a genuine reply with one 16-bit word of its IP header or its transport
    data changed, where no cookie lives, so the probe still claims it."""
    kind = draw(st.sampled_from([tcp_syn.PROBE.kind, tcp_ack.PROBE.kind, icmp_echo.PROBE.kind]))
    frame = bytearray(draw(GENUINE[kind])[0])
    l4 = 14 + (frame[14] & 0x0F) * 4
    # IP: the TOS byte (beside the IHL, kept) and the IP ID; TCP: the window; ICMP: its checksum.
    at = draw(st.sampled_from([14, 18, l4 + 14 if frame[23] == 6 else l4 + 2]))
    old = struct.unpack_from("!H", frame, at)[0]
    new = draw(st.integers(0, 0xFF)) | (old & 0xFF00) if at == 14 else draw(st.integers(0, 0xFFFF))
    # One's complement has two zeros: 0x0000 and 0xFFFF sum the same, as every checksum's reader
    # knows; and the TCP field may hold exactly the pseudo-header sum (what checksum offload
    # leaves, accepted on purpose). Neither is damage a checksum can see.
    assume((new - old) % 0xFFFF)
    struct.pack_into("!H", frame, at, new)
    if frame[23] == 6:
        pseudo = int.from_bytes(frame[26:34], "big") + 6 + (len(frame) - l4)
        assume((struct.unpack_from("!H", frame, l4 + 16)[0] - pseudo) % 0xFFFF)
    return kind, bytes(frame)


@FUZZ
@given(damaged())
def test_a_matched_reply_with_a_bad_checksum_is_dropped_and_counted(case: tuple[int, bytes]) -> None:
    kind, frame = case
    probe = PROBES[kind]
    assert frames.check(frame) == 0
    assert probe.answer(frame) is not None  # still claimed: the cookie is intact
    counts = [0] * len(MALFORMED)
    assert frames.take(frame, [Held(probe)], counts) is None
    assert MALFORMED[counts.index(1)] == "bad_checksum" and sum(counts) == 1


def test_checksum_offload_partial_sum_is_accepted() -> None:
    """Loopback and veth with tx offload hand AF_PACKET the TCP checksum field holding only the
    pseudo-header's sum; such a reply is ours all the same."""
    frame = bytearray(_fixed_syn_ack())
    l4 = 14 + (frame[14] & 0x0F) * 4
    seg_len = len(frame) - l4
    pseudo = sum(struct.unpack("!4H", frame[26:34])) + 6 + seg_len
    while pseudo > 0xFFFF:
        pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
    struct.pack_into("!H", frame, l4 + 16, pseudo)
    counts = [0] * len(MALFORMED)
    hit = frames.take(bytes(frame), [Held(PROBES[tcp_syn.PROBE.kind])], counts)
    assert hit is not None and hit[1].state == S_OPEN and not any(counts)


def _fixed_syn_ack() -> bytes:
    plan = PROBES[tcp_syn.PROBE.kind].plan
    c = cookie(plan.key, plan.slot, HOSTS[1], 80, plan.sport_base + 5)
    tcp = dpkt.tcp.TCP(sport=80, dport=plan.sport_base + 5, ack=c + 1, flags=0x12, win=512, off=6,
                       opts=b"\x02\x04\x05\xb4")
    return eth(ipv4(HOSTS[1], 6, tcp, b"", 64, 1))


# -- plans, as a worker reads them from a slot another process wrote -----------------------------
@FUZZ
@given(st.binary(min_size=plans.HEADER_BYTES, max_size=plans.HEADER_BYTES), st.integers(0, 3))
def test_any_plan_header_reads_as_a_plan_none_or_plan_error(header: bytes, slot: int) -> None:
    buf = memoryview(bytearray(plans.PLAN_BYTES))
    buf[: len(header)] = header
    try:
        plan = plans.read(buf, slot, ALL_KINDS)
    except plans.PlanError:
        return
    if plan is not None:
        assert plan.slot == slot and plan.kind in ALL_KINDS
        # A plan read is a plan a worker can build a probe for, or refuse: a probe's own needs
        # (PlanError: a kernel-shaped SYN without source ports) or its interface's (OSError).
        try:
            BUILD.get(plan.kind, ALL_KINDS[plan.kind].build)(plan)
        except (plans.PlanError, OSError):
            pass


def test_a_written_plan_reads_back() -> None:
    buf = memoryview(bytearray(plans.PLAN_BYTES))
    plan = make_plan(tcp_syn.PROBE.kind, slot=2)
    plans.write(buf, plan)
    assert plans.read(buf, 2, ALL_KINDS) == plan
    bad = dataclasses.replace(plan, shard_size=0)
    plans.write(buf, bad)
    with pytest.raises(plans.PlanError):
        plans.read(buf, 2, ALL_KINDS)
    plans.write(buf, plan)
    with pytest.raises(plans.PlanError):
        plans.read(buf, 3, ALL_KINDS)  # another slot's plan: its cookies would carry the wrong slot


def test_an_adaptive_timeout_the_send_tick_cannot_time_is_refused() -> None:
    """Replies are timed by the tick they echo, which wraps: an RTT past the wrap would read as
    a short one. A fixed timeout (min = max) takes no RTT into account, so it may be longer."""
    buf = memoryview(bytearray(plans.PLAN_BYTES))
    plan = make_plan(tcp_syn.PROBE.kind, slot=2)
    assert plans.TIMEOUT_MAX_MS < WRAP_MS == 4096
    plans.write(buf, dataclasses.replace(plan, timeout_max_ms=WRAP_MS))
    with pytest.raises(plans.PlanError, match="timeout 100-4096 ms"):
        plans.read(buf, 2, ALL_KINDS)
    fixed = dataclasses.replace(plan, timeout_init_ms=10_000, timeout_min_ms=10_000, timeout_max_ms=10_000)
    plans.write(buf, fixed)
    assert plans.read(buf, 2, ALL_KINDS) == fixed


@pytest.mark.parametrize("slot", range(PLAN_SLOTS))
def test_every_slot_takes_its_own_source_ports_and_the_filter_takes_them_all(slot: int) -> None:
    """scan/work.py gives plan slot s the block SPORT_BASE + (s << TICK_BITS): the last slot's
    ends at 65535, and a block that would leave the port space (for the filter's range over
    every slot) is refused."""
    buf = memoryview(bytearray(plans.PLAN_BYTES))
    plan = dataclasses.replace(make_plan(tcp_syn.PROBE.kind, slot=slot), sport_base=SPORT_BASE + (slot << TICK_BITS))
    plans.write(buf, plan)
    assert plans.read(buf, slot, ALL_KINDS) == plan
    assert plan.every_slot_ports == (SPORT_BASE, 0xFFFF)
    plans.write(buf, dataclasses.replace(plan, sport_base=plan.sport_base + 1))
    with pytest.raises(plans.PlanError, match="source ports from"):
        plans.read(buf, slot, ALL_KINDS)
