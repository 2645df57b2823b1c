"""A throwaway probe type, to show what adding one takes: this module and one register() line.

A DNS query over UDP (for the root's NS records) to each plan port: a DNS server's reply,
whatever its answer, proves the port open; an ICMP port unreachable, closed; another
unreachable, filtered. The source port carries the send tick, as the SYN's does, and the query
ID the top half of the cookie, which the reply echoes (and an ICMP error quotes, as Linux quotes
the whole datagram). The kernel's receive filter needs a clause for UDP replies to our source
ports, which no built-in probe type asks for.
"""

from __future__ import annotations

import struct

from netscand.engine import bpf, tally
from netscand.engine.checksum import checksum
from netscand.engine.clock import TICK_MASK
from netscand.engine.cookie import cookie
from netscand.engine.plan import Plan
from netscand.engine.probes import Answer, ProbeType
from netscand.engine.probes.tcp_syn import FILTER_CODES
from netscand.engine.shm import S_CLOSED, S_OPEN, S_UNREACH

ETH = 14
QUERY = struct.pack("!HHHHH", 0x0100, 1, 0, 0, 0) + b"\0" + struct.pack("!HH", 2, 1)  # RD; ". NS IN"
UDP = struct.Struct("!HHHHH")  # source port, destination port, length, checksum, then the DNS ID


class UdpDns:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._host_index = {ip: i for i, ip in enumerate(plan.hosts)}
        self._port_index = {p: i for i, p in enumerate(plan.ports)}

    def _id(self, ip: int, port: int, sport: int) -> int:
        return cookie(self.plan.key, self.plan.slot, ip, port, sport) >> 16

    def frame(self, host: int, port: int, tick: int) -> bytearray:
        p = self.plan
        dst, dport, sport = p.hosts[host], p.ports[port], p.sport_base + (tick & TICK_MASK)
        udp = UDP.pack(sport, dport, 8 + 2 + len(QUERY), 0, self._id(dst, dport, sport)) + QUERY
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                                   p.src_ip.to_bytes(4, "big"), dst.to_bytes(4, "big")))
        ip[10:12] = checksum(bytes(ip)).to_bytes(2, "big")
        return bytearray(p.macs[host] + p.src_mac + b"\x08\x00" + ip + udp)

    def answer(self, frame: bytes) -> Answer | None:
        if len(frame) < ETH + 20 or frame[12:14] != b"\x08\x00":
            return None
        l4 = ETH + (frame[14] & 0x0F) * 4
        if frame[23] == 17:
            return self._reply(frame, l4)
        if frame[23] == 1 and len(frame) >= l4 + 8 and frame[l4] == 3 and frame[l4 + 1] in FILTER_CODES:
            return self._quote(frame, l4 + 8, S_CLOSED if frame[l4 + 1] == 3 else S_UNREACH)
        return None

    def _reply(self, frame: bytes, l4: int) -> Answer | None:
        if len(frame) < l4 + UDP.size:
            return None
        sport, dport, _, _, qid = UDP.unpack_from(frame, l4)
        return self._match(int.from_bytes(frame[26:30], "big"), sport, dport, qid, S_OPEN, frame[22])

    def _quote(self, frame: bytes, inner: int, state: int) -> Answer | None:
        if len(frame) < inner + 20 or frame[inner + 9] != 17:
            return None
        t = inner + (frame[inner] & 0x0F) * 4
        if len(frame) < t + UDP.size:
            return None
        sport, dport, _, _, qid = UDP.unpack_from(frame, t)
        return self._match(int.from_bytes(frame[inner + 16 : inner + 20], "big"), dport, sport, qid, state,
                           frame[22])

    def _match(self, ip: int, port: int, sport: int, qid: int, state: int, ttl: int) -> Answer | None:
        """An answer when (ip, port) is one of the plan's and the ID is the cookie's."""
        host, index = self._host_index.get(ip), self._port_index.get(port)
        if host is None or index is None or qid != self._id(ip, port, sport):
            return None
        return Answer(host, index, state, sport & TICK_MASK, ttl)


PROBE = ProbeType("udp_dns", 250, UdpDns, lambda lo, hi: (bpf.ipv4(17) + bpf.to_ports(lo, hi) + bpf.ACCEPT,),
                  tally.ports, port_states=True)
