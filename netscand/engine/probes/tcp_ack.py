"""TCP ACK ping: an unsolicited ACK makes any live host's stack answer RST, firewall rules that
only watch for SYNs notwithstanding (nmap's -PA). The RST proves the host up; its sequence
number echoes our acknowledgement number, which carries the cookie."""

from __future__ import annotations

import struct

from netscand.engine import tally
from netscand.engine.clock import TICK_MASK
from netscand.engine.plan import Plan
from netscand.engine.probes.base import Answer, ProbeType
from netscand.engine.probes.tcp_syn import TcpSyn, tcp_replies
from netscand.engine.shm import S_UP

_ACK_FLAG_AT = 14 + 20 + 13
_ACK_AT = 14 + 20 + 8
_TCP_HDR = struct.Struct("!HHIIBBH")
_U32 = struct.Struct("!I")


class TcpAck(TcpSyn):
    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        # Same template as the SYN but flags ACK; sequence stays 0 and the cookie goes in the
        # acknowledgement field, patched where the SYN patches its sequence number.
        self._buf[_ACK_FLAG_AT] = 0x10
        self._tcp_sum += 0x10 - 0x02

    def frame(self, host: int, port: int, tick: int) -> bytearray:
        buf = super().frame(host, port, tick)
        seq = _U32.unpack_from(buf, _ACK_AT - 4)[0]
        # Move the cookie from sequence to acknowledgement number: the checksum's sum is unchanged.
        buf[_ACK_AT - 4 : _ACK_AT] = b"\0\0\0\0"
        _U32.pack_into(buf, _ACK_AT, seq)
        return buf

    def answer(self, frame: bytes) -> Answer | None:
        if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            return None
        t = 14 + (frame[14] & 0x0F) * 4
        if t < 34 or len(frame) < t + 20:
            return None
        sport, dport, seq, _, _, flags, _ = _TCP_HDR.unpack_from(frame, t)
        if not flags & 0x04:
            return None
        ip = _U32.unpack_from(frame, 26)[0]
        hit = self._match(ip, sport, dport, seq)
        if hit is None:
            return None
        return Answer(hit[0], hit[1], S_UP, dport & TICK_MASK, frame[22])


PROBE = ProbeType("tcp_ack", 4, TcpAck, lambda lo, hi: (tcp_replies(lo, hi),), tally.nothing)
