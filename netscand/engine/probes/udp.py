"""UDP probe: a protocol payload per port (payloads.py). A UDP reply means open, ICMP port
unreachable closed, another unreachable (host, protocol, administratively prohibited) filtered,
and silence after the retries open|filtered (nmap's meanings).

Targets' ICMP rate limits, and why this probe does not pace itself by them. Linux limits the
port unreachables it sends per peer (net.ipv4.icmp_ratelimit, 1000 ms: a token bucket with a
burst of 6; net.ipv4.icmp_ratemask includes type 3) and in all (icmp_msgs_per_sec 1000,
icmp_msgs_burst 50): a host answers about 6 closed ports at once, then about one a second, to
us. nmap paces its UDP scan to that (it slows a host down to about one probe a second once it
sees unreachables go missing): N ports cost N seconds per host, so the deep profile's list would
take minutes per host, and a thousand-port scan a quarter of an hour. We do not:
  - what we SEND: probes go at the scan's rate, interleaved over the hosts by the permutation
    like every probe type's: a host gets about rate / hosts of them a second;
  - what we WAIT for: replies within the plan's timeout, and the scan's retries of what got
    none. Retries are against the loss of a service's reply; they cannot beat a rate limit,
    which holds back the unreachables of the retry as it did the first ones;
  - what we INFER: a reply or an unreachable is certain; silence is open|filtered. On a host
    that rate-limits, most silent ports are in fact closed: the scan layer flags a host that
    answered some UDP probes with port unreachable and left more ports silent than it closed,
    rather than the engine spending a second per port to prove it; profiling scans then confirm
    (scan/identify.py, profiling/confirm.py): the flagged host's silent ports are asked again
    over ordinary sockets at its ICMP refill pace, every host at once, about 1.1 s per silent
    port of a host, overlapped with the rest of identification.
Open ports are what a UDP scan is for, and a service's reply is not rate limited: those are
found at full speed.

The frame is a pre-built Ethernet/IPv4/UDP template per payload (the ports without one share
the empty datagram's); per probe only the destination MAC, address, ports, IP ID, the payload's
cookie fields and both checksums are patched, the checksums incrementally from the template's
precomputed sums. Matching is stateless: the IP ID carries the cookie's high half, which an ICMP
error quotes with our addressing (a middlebox rewriting IP IDs turns closed ports into
open|filtered); a reply carries it in the field its protocol echoes. A reply that echoes nothing
is told from another plan's by its destination port: each plan slot has its own source ports.
"""

from __future__ import annotations

import struct

from netscand.engine import bpf, tally
from netscand.engine.checksum import finish, ones_sum
from netscand.engine.clock import TICK_MASK
from netscand.engine.cookie import Cookies
from netscand.engine.plan import Plan
from netscand.engine.probes.base import TTL, Answer, ProbeType
from netscand.engine.probes.payloads import Encoder, Payload, payload
from netscand.engine.shm import S_CLOSED, S_OPEN, S_UNREACH

_ETH = 14
_IP_ID, _IP_SUM, _IP_DST = _ETH + 4, _ETH + 10, _ETH + 16
_UDP = _ETH + 20
_UDP_SUM = _UDP + 6
_HEADERS = _UDP + 8
_ADDRESSING = struct.Struct("!IHH")  # destination address, source port, destination port
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_UDP_HDR = struct.Struct("!HHH")  # source port, destination port, length
CLOSED_CODE = 3  # port unreachable
# The other unreachables that say a filter is in the way (nmap's reading): network, host and
# protocol unreachable, and administratively prohibited (network, host, communication).
FILTER_CODES = frozenset({0, 1, 2, 9, 10, 13})


class _Template:
    """One payload's frame and its checksums' sums over everything a probe does not patch."""

    def __init__(self, plan: Plan, pay: Payload) -> None:
        self.payload = pay
        length = 8 + len(pay.data)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0, TTL, 17, 0,
                         plan.src_ip.to_bytes(4, "big"), b"\0\0\0\0")
        udp = struct.pack("!HHHH", 0, 0, length, 0) + pay.data
        self.buf = bytearray(b"\0" * 6 + plan.src_mac + b"\x08\x00" + ip + udp)
        self.ip_sum = ones_sum(ip)
        fixed = bytearray(udp)
        for at, encode in pay.fields:  # summed per probe, from what they then hold
            width = len(encode(0))
            fixed[8 + at : 8 + at + width] = bytes(width)
        pseudo = plan.src_ip.to_bytes(4, "big") + b"\0\0\0\x11" + length.to_bytes(2, "big")
        self.udp_sum = ones_sum(pseudo + bytes(fixed))
        # A field at an odd offset puts its first byte in the low half of a 16-bit word.
        self.fields: tuple[tuple[int, Encoder, bool], ...] = tuple(
            (_HEADERS + at, encode, at % 2 == 1) for at, encode in pay.fields)


class Udp:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._cookie = Cookies(plan.key, plan.slot, plan.hosts)
        self._hosts, self._macs, self._ports = plan.hosts, plan.macs, plan.ports
        self._lo, self._hi = plan.source_ports
        self._host_index = {ip: i for i, ip in enumerate(plan.hosts)}
        self._port_index = {p: i for i, p in enumerate(plan.ports)}
        pays = [payload(p) for p in plan.ports]
        by_name = {pay.name: _Template(plan, pay) for pay in {pay.name: pay for pay in pays}.values()}
        self._templates = [by_name[pay.name] for pay in pays]  # the ports without a payload share one
        # Replies that come from another port than the one probed, by the probed port's index.
        self._other_port = [(i, pay) for i, pay in enumerate(pays) if pay.other_port]

    def frame(self, host: int, port: int, tick: int) -> bytearray:
        t = self._templates[port]
        buf = t.buf
        dst, dport = self._hosts[host], self._ports[port]
        sport = self.plan.sport_base + (tick & TICK_MASK)
        c = self._cookie(host, dport, sport)
        ipid = c >> 16
        buf[0:6] = self._macs[host]
        _ADDRESSING.pack_into(buf, _IP_DST, dst, sport, dport)
        hi, lo = dst >> 16, dst & 0xFFFF
        _U16.pack_into(buf, _IP_ID, ipid)
        _U16.pack_into(buf, _IP_SUM, finish(t.ip_sum + hi + lo + ipid))
        total = t.udp_sum + hi + lo + sport + dport
        for at, encode, odd in t.fields:
            value = encode(c)
            buf[at : at + len(value)] = value
            total += ones_sum(b"\0" + value if odd else value)
        # A computed 0 is sent as 0xFFFF: 0 in the field means "no checksum" (RFC 768).
        _U16.pack_into(buf, _UDP_SUM, finish(total) or 0xFFFF)
        return buf

    def answer(self, frame: bytes) -> Answer | None:
        if len(frame) < _HEADERS or frame[12:14] != b"\x08\x00":
            return None
        ihl = (frame[14] & 0x0F) * 4
        if ihl < 20:
            return None
        proto = frame[23]
        if proto == 17:
            return self._udp(frame, _ETH + ihl)
        if proto == 1:
            return self._icmp(frame, _ETH + ihl)
        return None

    def _udp(self, frame: bytes, t: int) -> Answer | None:
        if len(frame) < t + 8:
            return None
        sport, dport, length = _UDP_HDR.unpack_from(frame, t)
        host = self._host_index.get(_U32.unpack_from(frame, 26)[0])
        if host is None or length < 8 or not self._lo <= dport <= self._hi:
            return None
        end = min(t + length, _ETH + (frame[16] << 8 | frame[17]))
        data, cut = bytes(frame[t + 8 : end]), end > len(frame)
        index = self._replied(data, host, sport, dport, cut)
        return None if index is None else Answer(host, index, S_OPEN, dport & TICK_MASK, frame[22])

    def _replied(self, data: bytes, host: int, sport: int, dport: int, cut: bool) -> int | None:
        """The index of the probed port a reply from `sport` to the plan's host index `host`
        answers, if any. A reply checked by
        its cookie is the probed port's; one that echoes nothing may be TFTP's from its new
        port, which may also be a probed port (32768-60999 are Linux's ephemeral ports): the
        protocol it speaks says which, before the port it comes from."""
        index = self._port_index.get(sport)
        own = None if index is None else self._templates[index].payload
        if own is not None and own.echoes and self._answers(own, data, host, sport, dport, cut):
            return index
        for other, pay in self._other_port:
            if self._answers(pay, data, host, self._ports[other], dport, cut):
                return other
        if own is not None and not own.echoes and self._answers(own, data, host, sport, dport, cut):
            return index
        return None

    def _answers(self, pay: Payload, data: bytes, host: int, port: int, sport: int, cut: bool) -> bool:
        c = self._cookie(host, port, sport) if pay.echoes else 0
        return pay.answers(data, c, cut)

    def _icmp(self, frame: bytes, i: int) -> Answer | None:
        # Type 3 quotes our IP header (its ID holds the cookie's high half) and at least the
        # first 8 bytes of our datagram: the ports.
        inner = i + 8
        if len(frame) < inner + 28 or frame[i] != 3 or frame[inner + 9] != 17:
            return None
        code = frame[i + 1]
        t = inner + (frame[inner] & 0x0F) * 4
        if not (code == CLOSED_CODE or code in FILTER_CODES) or t < inner + 20 or len(frame) < t + 4:
            return None
        ip, (sport, dport) = _U32.unpack_from(frame, inner + 16)[0], struct.unpack_from("!HH", frame, t)
        # Port unreachable from the host itself says closed; from a router on the way (a REJECT
        # rule) it says a filter, as any other unreachable does.
        by_host = _U32.unpack_from(frame, 26)[0] == ip
        state = S_CLOSED if code == CLOSED_CODE and by_host else S_UNREACH
        host, index = self._host_index.get(ip), self._port_index.get(dport)
        if host is None or index is None or not self._lo <= sport <= self._hi:
            return None
        if self._cookie(host, dport, sport) >> 16 != _U16.unpack_from(frame, inner + 4)[0]:
            return None
        return Answer(host, index, state, sport & TICK_MASK, frame[22])


def udp_replies(lo: int, hi: int) -> bpf.Clause:
    """UDP to our source ports, unfragmented or a first fragment (bpf.ipv4: the fragment
    offset is 0, so the UDP header is there)."""
    return bpf.ipv4(17) + bpf.to_ports(lo, hi) + bpf.ACCEPT


PROBE = ProbeType("udp", 5, Udp, lambda lo, hi: (udp_replies(lo, hi), bpf.ANY_ICMP), tally.udp_ports,
                  port_states=True, protocol="udp")
