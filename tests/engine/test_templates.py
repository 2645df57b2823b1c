"""Frames built from patched templates must be exactly what dpkt computes from scratch."""

import dataclasses

import dpkt

from netscand.engine import plan as plans
from netscand.engine.checksum import checksum
from netscand.engine.clock import TICK_MASK
from netscand.engine.cookie import cookie
from netscand.engine.probes import PROBES, arp, icmp_echo, tcp_ack, tcp_syn
from netscand.engine.shm import S_CLOSED, S_OPEN, S_UNREACH, S_UP

SRC_MAC = bytes.fromhex("020000000001")
HOST_MAC = bytes.fromhex("020000000010")


def make_plan(kind=tcp_syn.PROBE.kind, ports=(22, 80, 65535)):
    hosts = (0xC6120010, 0xC6120011)
    return plans.Plan(gen=7, kind=kind, slot=2, share=1, retries=1, key=b"k" * 16, ifindex=2,
                      src_ip=0xC6120001, src_mac=SRC_MAC, sport_base=61440, rate=100.0,
                      timeout_init_ms=100, timeout_min_ms=100, timeout_max_ms=100,
                      shard_size=1024, hosts=hosts, macs=(HOST_MAC, HOST_MAC), ports=ports)


def dpkt_sums(ip: dpkt.ip.IP) -> tuple[int, int]:
    """IP and TCP checksums as dpkt computes them from scratch for the same packet."""
    fresh = dpkt.ip.IP(bytes(ip))
    fresh.sum = 0
    fresh.data.sum = 0
    rebuilt = dpkt.ip.IP(bytes(fresh))
    return rebuilt.sum, rebuilt.data.sum


def test_checksum_matches_dpkt():
    ip = dpkt.ip.IP(src=b"\xc6\x12\0\1", dst=b"\xc6\x12\0\x10", p=6, data=dpkt.tcp.TCP(sport=1, dport=2))
    raw = bytes(ip)
    assert checksum(raw[:10] + b"\0\0" + raw[12:20]) == dpkt.ip.IP(raw).sum


def test_syn_frames_have_dpkt_checksums():
    probe = tcp_syn.PROBE.build(make_plan())
    for host in range(2):
        for port in range(3):
            for tick in (0, 5, TICK_MASK):
                frame = bytes(probe.frame(host, port, tick))
                eth = dpkt.ethernet.Ethernet(frame)
                ip, tcp = eth.data, eth.data.data
                assert eth.dst == HOST_MAC and eth.src == SRC_MAC
                assert tcp.flags == dpkt.tcp.TH_SYN
                assert (ip.sum, tcp.sum) == dpkt_sums(ip)


def _reply(plan, host, port, flags, tick=3, seq_delta=1):
    sport = plan.sport_base + tick
    c = cookie(plan.key, plan.slot, plan.hosts[host], plan.ports[port], sport)
    tcp = dpkt.tcp.TCP(sport=plan.ports[port], dport=sport, ack=(c + seq_delta) & 0xFFFFFFFF,
                       flags=flags, win=29200, off=6, opts=b"\x02\x04\x05\xb4")
    ip = dpkt.ip.IP(src=plan.hosts[host].to_bytes(4, "big"), dst=plan.src_ip.to_bytes(4, "big"),
                    p=6, ttl=61, data=tcp)
    return bytes(dpkt.ethernet.Ethernet(src=HOST_MAC, dst=SRC_MAC, data=ip))


def test_syn_ack_rst_and_forged_replies():
    plan = make_plan()
    probe = PROBES[plan.kind].build(plan)
    a = probe.answer(_reply(plan, 1, 2, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK))
    assert (a.host, a.port, a.state, a.tick, a.ttl, a.win) == (1, 2, S_OPEN, 3, 61, 29200)
    assert a.opts == b"\x02\x04\x05\xb4"
    assert probe.answer(_reply(plan, 0, 0, dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK)).state == S_CLOSED
    assert probe.answer(_reply(plan, 0, 0, dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK, seq_delta=5)) is None
    other = tcp_syn.PROBE.build(dataclasses.replace(make_plan(), key=b"x" * 16))
    assert other.answer(_reply(plan, 0, 0, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)) is None
    assert probe.answer(b"\0" * 20) is None


def test_icmp_unreachable_quoting_our_probe_is_filtered():
    plan = make_plan()
    probe = PROBES[plan.kind].build(plan)
    sent = dpkt.ethernet.Ethernet(bytes(probe.frame(0, 1, 9))).data
    unreach = dpkt.icmp.ICMP(type=3, code=13, data=dpkt.icmp.ICMP.Unreach(data=bytes(sent)[:28]))
    ip = dpkt.ip.IP(src=b"\xc6\x12\0\xfe", dst=plan.src_ip.to_bytes(4, "big"), p=1, data=unreach)
    a = probe.answer(bytes(dpkt.ethernet.Ethernet(src=HOST_MAC, dst=SRC_MAC, data=ip)))
    assert (a.host, a.port, a.state, a.tick) == (0, 1, S_UNREACH, 9)


def test_arp_request_and_reply():
    plan = make_plan(kind=arp.PROBE.kind, ports=(0,))
    probe = PROBES[plan.kind].build(plan)
    req = dpkt.ethernet.Ethernet(bytes(probe.frame(1, 0, 0)))
    assert req.dst == b"\xff" * 6 and req.arp.op == dpkt.arp.ARP_OP_REQUEST
    assert req.arp.tpa == plan.hosts[1].to_bytes(4, "big")
    reply = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REPLY, sha=HOST_MAC, spa=req.arp.tpa, tha=SRC_MAC,
                         tpa=req.arp.spa)
    frame = bytes(dpkt.ethernet.Ethernet(dst=SRC_MAC, src=HOST_MAC, type=0x0806, data=reply))
    a = probe.answer(frame)
    assert (a.host, a.state, a.mac) == (1, S_UP, HOST_MAC)


def test_tcp_ack_ping_frame_and_rst_reply():
    plan = make_plan(kind=tcp_ack.PROBE.kind, ports=(80,))
    probe = PROBES[plan.kind].build(plan)
    frame = bytes(probe.frame(1, 0, 7))
    ip = dpkt.ethernet.Ethernet(frame).data
    tcp = ip.data
    assert tcp.flags == dpkt.tcp.TH_ACK and tcp.seq == 0 and tcp.dport == 80
    assert (ip.sum, tcp.sum) == dpkt_sums(ip)
    rst = dpkt.tcp.TCP(sport=80, dport=tcp.sport, seq=tcp.ack, flags=dpkt.tcp.TH_RST, off=5)
    reply = dpkt.ip.IP(src=ip.dst, dst=ip.src, p=6, ttl=120, data=rst)
    a = probe.answer(bytes(dpkt.ethernet.Ethernet(src=HOST_MAC, dst=SRC_MAC, data=reply)))
    assert (a.host, a.port, a.state, a.tick, a.ttl) == (1, 0, S_UP, 7, 120)
    rst.seq ^= 0x100
    forged = dpkt.ip.IP(src=ip.dst, dst=ip.src, p=6, data=rst)
    assert probe.answer(bytes(dpkt.ethernet.Ethernet(src=HOST_MAC, dst=SRC_MAC, data=forged))) is None


def test_icmp_echo_frame_and_reply():
    plan = make_plan(kind=icmp_echo.PROBE.kind, ports=(0,))
    probe = PROBES[plan.kind].build(plan)
    frame = bytes(probe.frame(0, 0, 11))
    ip = dpkt.ethernet.Ethernet(frame).data
    echo = ip.data
    assert echo.type == 8 and checksum(bytes(echo)) == 0 and checksum(bytes(ip)[:20]) == 0
    reply_icmp = dpkt.icmp.ICMP(type=0, code=0, data=echo.data)
    reply = dpkt.ip.IP(src=ip.dst, dst=ip.src, p=1, ttl=63, data=reply_icmp)
    a = probe.answer(bytes(dpkt.ethernet.Ethernet(src=HOST_MAC, dst=SRC_MAC, data=reply)))
    assert (a.host, a.state, a.tick, a.ttl) == (0, S_UP, 11, 63)
    wrong_host = dpkt.ip.IP(src=b"\xc6\x12\0\x11", dst=ip.src, p=1, data=reply_icmp)
    assert probe.answer(bytes(dpkt.ethernet.Ethernet(src=HOST_MAC, dst=SRC_MAC, data=wrong_host))) is None
