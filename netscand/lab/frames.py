"""The frame attacker's frames: malformed or forged Ethernet frames addressed to the scanner.

Each kind is a function of the addressing and a random generator. Most are shaped to pass the
engine's receive filter (engine/sockets.py reply_filter: ARP replies, any unfragmented ICMP,
unfragmented TCP with ACK or RST to the probes' source ports), since a frame the filter drops
never reaches a parser; a few (the tiny ones) test the kernel and the filter themselves.
Forged replies carry random sequence numbers: a cookie (engine/cookie.py) must reject them.
ARP frames only ever tell the truth about the attacker's own address: a lie about another host's
MAC is an attack no scanner can detect, and would make the other hosts' results wrong.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

from netscand.engine.checksum import checksum
from netscand.engine.clock import TICK_BITS
from netscand.engine.probes.tcp_syn import FILTER_CODES
from netscand.engine.shm import PLAN_SLOTS
from netscand.scan.work import SPORT_BASE

_FILTERED = tuple(sorted(FILTER_CODES))  # unreachable codes the engine reads as "filtered"

# The scanner's probe source ports: every plan slot's block (scan/work.py).
PORT_LO, PORT_HI = SPORT_BASE, SPORT_BASE + (PLAN_SLOTS << TICK_BITS) - 1
ETH_IP, ETH_ARP = 0x0800, 0x0806
FRAME_MAX = 1514  # Ethernet header + the veth's 1500-byte MTU
SYN, RST, ACK = 0x02, 0x04, 0x10
# MSS 1460, SACK permitted, timestamps, NOP, window scale 7: a Linux SYN-ACK's options.
_GOOD_OPTIONS = bytes.fromhex("020405b4" "0402" "080a" "00000001" "00000000" "01" "030307")
# TCP options that lie about their lengths: 0 (a parser that never advances), 1 (shorter than
# its own header), 255 and 40 (past the header), and a kind with no length byte at the end.
_BAD_OPTIONS = (b"\x02\x00", b"\x08\x01", b"\x03\xff\x07", b"\x04\x28", b"\x1e\x00\x00", b"\x08")


@dataclass(frozen=True)
class Target:
    scanner_mac: bytes
    scanner_ip: bytes
    own_mac: bytes
    own_ip: bytes
    peers: tuple[bytes, ...]  # addresses forged replies claim to come from (the lab's hosts)

    @classmethod
    def of(cls, scanner_mac: str, scanner_ip: str, own_mac: str, own_ip: str, peers: list[str]) -> Target:
        return cls(mac_bytes(scanner_mac), ip_bytes(scanner_ip), mac_bytes(own_mac), ip_bytes(own_ip),
                   tuple(ip_bytes(p) for p in peers) or (ip_bytes(own_ip),))


def mac_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def ip_bytes(text: str) -> bytes:
    return bytes(int(part) for part in text.split("."))


def eth(t: Target, ethertype: int, payload: bytes) -> bytes:
    return (t.scanner_mac + t.own_mac + struct.pack("!H", ethertype) + payload)[:FRAME_MAX]


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, *, ihl: int = 5, options: bytes = b"",
         tot_len: int | None = None, version: int = 4, good_sum: bool = True, ident: int = 0) -> bytes:
    """An IPv4 packet whose header fields may lie: IHL, total length, version, checksum."""
    length = 20 + len(options) + len(payload) if tot_len is None else tot_len
    header = bytearray(struct.pack("!BBHHHBBH4s4s", (version & 0xF) << 4 | (ihl & 0xF), 0, length & 0xFFFF,
                                   ident, 0x4000, 64, proto, 0, src, dst) + options)
    _set_sum(header, 10, checksum(bytes(header)), good_sum)
    return bytes(header) + payload


def tcp(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, *,
        options: bytes = b"", doff: int | None = None, good_sum: bool = True, payload: bytes = b"") -> bytes:
    offset = (20 + len(options) + 3) // 4 if doff is None else doff
    segment = bytearray(struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (offset & 0xF) << 4, flags, 64240, 0, 0)
                        + options + payload)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(segment))
    _set_sum(segment, 16, checksum(pseudo + bytes(segment)), good_sum)
    return bytes(segment)


def icmp(kind: int, code: int, data: bytes, *, good_sum: bool = True) -> bytes:
    message = bytearray(struct.pack("!BBH", kind, code, 0) + bytes(4) + data)
    _set_sum(message, 2, checksum(bytes(message)), good_sum)
    return bytes(message)


def arp_reply(t: Target, *, htype: int = 1, ptype: int = ETH_IP, hlen: int = 6, plen: int = 4) -> bytes:
    """An ARP reply telling the truth about the attacker (at the fixed offsets every parser reads)."""
    return struct.pack("!HHBBH", htype, ptype, hlen, plen, 2) + t.own_mac + t.own_ip + t.scanner_mac + t.scanner_ip


def _set_sum(buf: bytearray, at: int, value: int, good: bool) -> None:
    struct.pack_into("!H", buf, at, value if good else value ^ 0x5A5A)  # never the right sum


def _source(t: Target, rng: random.Random) -> bytes:
    return rng.choice((t.own_ip, *t.peers))


def _probe_port(rng: random.Random) -> int:
    return rng.randint(PORT_LO, PORT_HI)


def _seq(rng: random.Random) -> int:
    return rng.getrandbits(32)


def _forged_reply(t: Target, rng: random.Random, *, good_sum: bool = True, tot_len: int | None = None,
                  version: int = 4) -> bytes:
    """A SYN-ACK or RST from a lab host to a probe port, with sequence numbers no cookie matches."""
    src = _source(t, rng)
    synack = rng.random() < 0.5
    segment = tcp(src, t.scanner_ip, rng.randint(1, 65535), _probe_port(rng), _seq(rng), _seq(rng),
                  SYN | ACK if synack else RST | ACK, options=_GOOD_OPTIONS if synack else b"", good_sum=good_sum)
    return ipv4(src, t.scanner_ip, 6, segment, good_sum=good_sum, tot_len=tot_len, version=version)


def _quoted_probe(t: Target, rng: random.Random) -> bytes:
    """What an ICMP error quotes: a SYN as the scanner would have sent it (20 + 20 bytes)."""
    dst = _source(t, rng)
    return ipv4(t.scanner_ip, dst, 6, tcp(t.scanner_ip, dst, _probe_port(rng), rng.randint(1, 65535), _seq(rng), 0,
                                          SYN))


def _unreachable(t: Target, rng: random.Random, quote: bytes, *, good_sum: bool = True) -> bytes:
    src = _source(t, rng)
    return ipv4(src, t.scanner_ip, 1, icmp(3, rng.choice(_FILTERED), quote, good_sum=good_sum), good_sum=good_sum)


# -- the kinds ---------------------------------------------------------------------------------------

def icmp_ihl15_one_byte(t: Target, rng: random.Random) -> bytes:
    """Issue 9's regression: IHL=15 (40 bytes of NOP options) and one byte of ICMP, a 3."""
    return eth(t, ETH_IP, ipv4(t.own_ip, t.scanner_ip, 1, b"\x03", ihl=15, options=b"\x01" * 40))


def icmp_header_cut(t: Target, rng: random.Random) -> bytes:
    """An unreachable cut inside its own 8-byte header, behind a short or a long IP header."""
    ihl = rng.choice((5, 15))
    data = bytes((3, rng.choice(_FILTERED))) + rng.randbytes(rng.randint(0, 5))
    return eth(t, ETH_IP, ipv4(t.own_ip, t.scanner_ip, 1, data, ihl=ihl, options=b"\x01" * (ihl * 4 - 20)))


def icmp_quote_cut(t: Target, rng: random.Random) -> bytes:
    """An unreachable whose quoted IP header (and so the TCP ports) is cut short."""
    return eth(t, ETH_IP, _unreachable(t, rng, _quoted_probe(t, rng)[: rng.randint(0, 27)]))


def icmp_quote_ihl(t: Target, rng: random.Random) -> bytes:
    """An unreachable whose quoted IP header claims an IHL past the quote (or below 5)."""
    quote = bytearray(_quoted_probe(t, rng))
    quote[0] = 0x40 | rng.choice((0, 1, 2, 3, 4, 15))
    return eth(t, ETH_IP, _unreachable(t, rng, bytes(quote[: rng.randint(20, 32)])))


def icmp_quote_forged(t: Target, rng: random.Random) -> bytes:
    """A complete unreachable quoting a probe that was never sent (a forged cookie)."""
    return eth(t, ETH_IP, _unreachable(t, rng, _quoted_probe(t, rng)[:28]))


def icmp_echo_reply_short(t: Target, rng: random.Random) -> bytes:
    """An echo reply cut before its identifier, sequence and tick."""
    return eth(t, ETH_IP, ipv4(_source(t, rng), t.scanner_ip, 1, b"\x00" + rng.randbytes(rng.randint(0, 8))))


def tcp_forged(t: Target, rng: random.Random) -> bytes:
    """A well-formed SYN-ACK or RST to a probe port from a lab host: only the cookie is wrong."""
    return eth(t, ETH_IP, _forged_reply(t, rng))


def tcp_offset_past_end(t: Target, rng: random.Random) -> bytes:
    """A data offset of 15 (60 bytes of header) on a segment that ends sooner."""
    src = _source(t, rng)
    segment = tcp(src, t.scanner_ip, rng.randint(1, 65535), _probe_port(rng), _seq(rng), _seq(rng),
                  rng.choice((SYN | ACK, RST | ACK, ACK)), options=rng.randbytes(rng.randint(0, 24)), doff=15)
    return eth(t, ETH_IP, ipv4(src, t.scanner_ip, 6, segment))


def tcp_offset_small(t: Target, rng: random.Random) -> bytes:
    """A data offset below 5: the header claims to be shorter than its fixed part."""
    src = _source(t, rng)
    segment = tcp(src, t.scanner_ip, rng.randint(1, 65535), _probe_port(rng), _seq(rng), _seq(rng), SYN | ACK,
                  doff=rng.randint(0, 4))
    return eth(t, ETH_IP, ipv4(src, t.scanner_ip, 6, segment))


def tcp_cut_after_flags(t: Target, rng: random.Random) -> bytes:
    """A TCP header cut right after its flags byte, the least the receive filter lets through."""
    src = _source(t, rng)
    ihl = rng.choice((5, 15))
    segment = tcp(src, t.scanner_ip, rng.randint(1, 65535), _probe_port(rng), _seq(rng), _seq(rng), SYN | ACK)
    packet = ipv4(src, t.scanner_ip, 6, segment, ihl=ihl, options=b"\x01" * (ihl * 4 - 20))
    return eth(t, ETH_IP, packet[: ihl * 4 + 14])


def ip_ihl_below_five(t: Target, rng: random.Random) -> bytes:
    """IHL 0-4: the transport header "starts" inside the IP header. The total length (read as the
    destination port when IHL is 0) is a probe port, so the receive filter lets it through."""
    proto = rng.choice((1, 6))
    body = rng.randbytes(rng.randint(0, 40))
    return eth(t, ETH_IP, ipv4(t.own_ip, t.scanner_ip, proto, body, ihl=rng.randint(0, 4),
                               tot_len=_probe_port(rng), ident=rng.getrandbits(16)))


def ip_total_length_lies(t: Target, rng: random.Random) -> bytes:
    """A total length of 0, 1, 19, 20, 65535 or past the frame, on a reply that is otherwise fine."""
    lie = rng.choice((0, 1, 19, 20, 65535, 1400))
    if rng.random() < 0.5:
        return eth(t, ETH_IP, _forged_reply(t, rng, tot_len=lie))
    quote = _quoted_probe(t, rng)[:28]
    return eth(t, ETH_IP, ipv4(_source(t, rng), t.scanner_ip, 1, icmp(3, 3, quote), tot_len=lie))


def ip_not_version_4(t: Target, rng: random.Random) -> bytes:
    """An IPv4 ethertype carrying a version 0, 6 or 15 header."""
    return eth(t, ETH_IP, _forged_reply(t, rng, version=rng.choice((0, 6, 15))))


def bad_checksums(t: Target, rng: random.Random) -> bytes:
    """A forged reply or unreachable with wrong IP and TCP/ICMP checksums."""
    if rng.random() < 0.5:
        return eth(t, ETH_IP, _forged_reply(t, rng, good_sum=False))
    return eth(t, ETH_IP, _unreachable(t, rng, _quoted_probe(t, rng)[:28], good_sum=False))


def max_size(t: Target, rng: random.Random) -> bytes:
    """A full 1514-byte frame: 40 bytes of IP options, a 60-byte TCP header of garbage options and
    a payload; or an unreachable quoting 1472 bytes."""
    src = _source(t, rng)
    if rng.random() < 0.5:
        segment = tcp(src, t.scanner_ip, rng.randint(1, 65535), _probe_port(rng), _seq(rng), _seq(rng), SYN | ACK,
                      options=rng.randbytes(40), payload=rng.randbytes(1380))
        packet = ipv4(src, t.scanner_ip, 6, segment, ihl=15, options=rng.randbytes(40))
    else:
        packet = ipv4(src, t.scanner_ip, 1, icmp(3, rng.choice(_FILTERED), _quoted_probe(t, rng) + rng.randbytes(1432)))
    return eth(t, ETH_IP, packet)


def tcp_options_lie(t: Target, rng: random.Random) -> bytes:
    """A SYN-ACK whose options give lengths of 0, 1 or past the header."""
    return eth(t, ETH_IP, hostile_synack(t, rng, _source(t, rng), rng.randint(1, 65535), _probe_port(rng),
                                         _seq(rng)))


def arp_truncated(t: Target, rng: random.Random) -> bytes:
    """An ARP reply cut anywhere from just after its opcode to just before its end."""
    return eth(t, ETH_ARP, arp_reply(t)[: rng.randint(8, 27)])


def arp_oversized(t: Target, rng: random.Random) -> bytes:
    """A true ARP reply padded to a full frame."""
    return eth(t, ETH_ARP, arp_reply(t) + rng.randbytes(FRAME_MAX - 14 - 28))


def arp_bad_lengths(t: Target, rng: random.Random) -> bytes:
    """An ARP reply whose hardware/protocol types and address lengths are not Ethernet/IPv4's."""
    fields = rng.choice(({"hlen": 255}, {"plen": 0}, {"hlen": 0, "plen": 255}, {"htype": 0xFFFF},
                         {"ptype": 0x86DD, "plen": 16}))
    return eth(t, ETH_ARP, arp_reply(t, **fields))


def random_ipv4(t: Target, rng: random.Random) -> bytes:
    """Random bytes behind an IPv4 ethertype, made to pass the receive filter (TCP or ICMP,
    unfragmented) so that they reach a parser."""
    packet = bytearray(rng.randbytes(rng.randint(10, FRAME_MAX - 14)))
    packet[6:8] = b"\0\0"
    packet[9] = rng.choice((1, 6))
    return eth(t, ETH_IP, bytes(packet))


def tiny(t: Target, rng: random.Random) -> bytes:
    """An IPv4 or ARP frame of 0-9 bytes after the Ethernet header."""
    return eth(t, rng.choice((ETH_IP, ETH_ARP)), rng.randbytes(rng.randint(0, 9)))


Kind = Callable[[Target, random.Random], bytes]
KINDS: dict[str, Kind] = {kind.__name__: kind for kind in (
    icmp_ihl15_one_byte, icmp_header_cut, icmp_quote_cut, icmp_quote_ihl, icmp_quote_forged,
    icmp_echo_reply_short, tcp_forged, tcp_offset_past_end, tcp_offset_small, tcp_cut_after_flags,
    ip_ihl_below_five, ip_total_length_lies, ip_not_version_4, bad_checksums, max_size, tcp_options_lie,
    arp_truncated, arp_oversized, arp_bad_lengths, random_ipv4, tiny)}


def hostile_synack(t: Target, rng: random.Random, src: bytes, sport: int, dport: int, ack: int) -> bytes:
    """A SYN-ACK (as IPv4) whose data offset claims 60 bytes, followed by options that lie about
    their lengths and stop before the header's claimed end."""
    options = b"".join(rng.choice(_BAD_OPTIONS) for _ in range(rng.randint(1, 6)))[: rng.randint(0, 39)]
    segment = tcp(src, t.scanner_ip, sport, dport, _seq(rng), ack, SYN | ACK, options=options, doff=15)
    return ipv4(src, t.scanner_ip, 6, segment)


def is_scanner_talking(frame: bytes) -> bool:
    """Whether a frame from the scanner is its own doing: a RST or an ICMP error is its kernel
    answering a forged frame, which must not keep the attack going by itself."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return True
    at = 14 + (frame[14] & 0x0F) * 4
    if frame[23] == 6 and len(frame) > at + 13:
        return not frame[at + 13] & RST
    if frame[23] == 1 and len(frame) > at:
        return frame[at] not in (3, 11, 12)  # unreachable, time exceeded, parameter problem
    return True


def echo_synack(t: Target, rng: random.Random, frame: bytes) -> bytes | None:
    """For the scanner's SYN to the attacker: a SYN-ACK that acknowledges it (so its cookie is
    right and it reaches the option parser) with options that lie. None for any other frame."""
    if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6 or frame[30:34] != t.own_ip:
        return None
    t_at = 14 + (frame[14] & 0x0F) * 4
    if len(frame) < t_at + 14 or frame[t_at + 13] != SYN:
        return None
    sport, dport, seq = struct.unpack_from("!HHI", frame, t_at)
    return eth(t, ETH_IP, hostile_synack(t, rng, t.own_ip, dport, sport, (seq + 1) & 0xFFFFFFFF))
