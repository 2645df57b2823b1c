"""The receive filter the probe types' clauses make, run by a small classic-BPF interpreter (the
few instructions bpf.py emits, with the kernel's rule that a load past the packet rejects it)."""

from __future__ import annotations

import struct

import dpkt

from netscand.engine import bpf
from netscand.engine.probes import reply_clauses
from netscand.engine.sockets import SNAPLEN

LO, HI = 61440, 61440 + 1023
FILTER = bpf.reply_filter(reply_clauses(LO, HI), SNAPLEN)


def run(program: bytes, pkt: bytes) -> int:
    """What the kernel would keep of `pkt`: 0 drops it."""
    rows = [struct.unpack_from("HBBI", program, i) for i in range(0, len(program), 8)]
    a = x = pc = 0
    while True:
        code, jt, jf, k = rows[pc]
        pc += 1
        if code in (bpf.LD_H, bpf.LD_HX, bpf.LD_B, bpf.LD_BX, bpf.LDX_MSH):
            at = k + (x if code in (bpf.LD_HX, bpf.LD_BX) else 0)
            size = 2 if code in (bpf.LD_H, bpf.LD_HX) else 1
            if at + size > len(pkt):
                return 0
            value = int.from_bytes(pkt[at : at + size], "big")
            if code == bpf.LDX_MSH:
                x = (value & 0x0F) * 4
            else:
                a = value
        elif code == bpf.JA:
            pc += k
        elif code == bpf.AND:
            a &= k
        elif code == bpf.RET:
            return k
        else:
            taken = {bpf.JEQ: a == k, bpf.JGE: a >= k, bpf.JGT: a > k, bpf.JSET: bool(a & k)}[code]
            pc += jt if taken else jf


def tcp(dport: int, flags: int, offset: int = 0) -> bytes:
    seg = dpkt.tcp.TCP(sport=80, dport=dport, flags=flags)
    ip = dpkt.ip.IP(src=b"\xc6\x12\0\x10", dst=b"\xc6\x12\0\1", p=6, data=seg)
    ip.offset = offset  # in bytes: 8 per unit of the header's fragment offset
    return bytes(dpkt.ethernet.Ethernet(data=ip))


def other(proto: int, data: bytes) -> bytes:
    ip = dpkt.ip.IP(src=b"\xc6\x12\0\x10", dst=b"\xc6\x12\0\1", p=proto, data=data)
    return bytes(dpkt.ethernet.Ethernet(data=ip))


def arp(op: int) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(type=0x0806, data=dpkt.arp.ARP(op=op)))


def test_the_replies_of_the_registered_probes_pass_and_nothing_else() -> None:
    kept = {
        "syn-ack to our ports": tcp(LO + 5, 0x12), "rst at the top of them": tcp(HI, 0x14),
        "icmp": other(1, bytes(dpkt.icmp.ICMP(type=0, data=dpkt.icmp.ICMP.Echo()))), "arp reply": arp(2),
        "udp to our ports": other(17, bytes(dpkt.udp.UDP(sport=53, dport=LO))),
    }
    dropped = {
        "syn-ack below our ports": tcp(LO - 1, 0x12), "above them": tcp(HI + 1, 0x12),
        "our own syn (seen on lo)": tcp(LO + 5, 0x02), "a later fragment": tcp(LO + 5, 0x12, offset=1480),
        "udp below our ports": other(17, bytes(dpkt.udp.UDP(sport=53, dport=LO - 1))), "arp request": arp(1),
        "ipv6": bytes(dpkt.ethernet.Ethernet(type=0x86DD, data=b"\0" * 40)), "runt": b"\0" * 13,
    }
    assert {name: run(FILTER, pkt) for name, pkt in kept.items()} == dict.fromkeys(kept, SNAPLEN)
    assert {name: run(FILTER, pkt) for name, pkt in dropped.items()} == dict.fromkeys(dropped, 0)


def test_a_clause_shared_by_probe_types_is_in_the_filter_once() -> None:
    assert bpf.reply_filter([bpf.ANY_ICMP, bpf.ANY_ICMP], SNAPLEN) == bpf.reply_filter([bpf.ANY_ICMP], SNAPLEN)
    assert len(FILTER) // 8 < sum(map(len, reply_clauses(LO, HI))) + 2
