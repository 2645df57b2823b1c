"""ICMP echo ping: the classic host discovery probe (nmap's -PE). The echo identifier and
sequence number carry the cookie, and the echoed payload carries the send tick, so a reply is
verified and timed without any table."""

from __future__ import annotations

import struct

from netscand.engine import bpf, tally
from netscand.engine.checksum import finish, ones_sum
from netscand.engine.clock import TICK_MASK
from netscand.engine.cookie import SLOT_MASK, Cookies
from netscand.engine.plan import Plan
from netscand.engine.probes.base import TTL, Answer, ProbeType
from netscand.engine.shm import S_UP

_ETH = 14
_IP_ID, _IP_SUM, _IP_DST = _ETH + 4, _ETH + 10, _ETH + 16
_ICMP = _ETH + 20
_PAYLOAD = b"netscand"  # 8 bytes after the tick, so the frame is a normal-looking ping
_ICMP_LEN = 8 + 2 + len(_PAYLOAD)
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_ECHO = struct.Struct("!HIH")  # checksum, identifier+sequence (the cookie), tick


class IcmpEcho:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._slot = plan.slot
        self._cookie = Cookies(plan.key, plan.slot, plan.hosts)
        self._hosts, self._macs = plan.hosts, plan.macs
        self._host_index = {ip: i for i, ip in enumerate(plan.hosts)}
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + _ICMP_LEN, 0, 0, TTL, 1, 0,
                         plan.src_ip.to_bytes(4, "big"), b"\0\0\0\0")
        icmp = struct.pack("!BBHIH", 8, 0, 0, 0, 0) + _PAYLOAD
        self._buf = bytearray(b"\0" * 6 + plan.src_mac + b"\x08\x00" + ip + icmp)
        self._ip_sum = ones_sum(ip)
        self._icmp_sum = ones_sum(icmp)

    def frame(self, host: int, port: int, tick: int) -> bytearray:
        buf = self._buf
        dst = self._hosts[host]
        tick &= TICK_MASK
        c = self._cookie(host, 0, 0)
        buf[0:6] = self._macs[host]
        _U32.pack_into(buf, _IP_DST, dst)
        _U16.pack_into(buf, _IP_ID, c & 0xFFFF)
        _U16.pack_into(buf, _IP_SUM, finish(self._ip_sum + (dst >> 16) + (dst & 0xFFFF) + (c & 0xFFFF)))
        _ECHO.pack_into(buf, _ICMP + 2, finish(self._icmp_sum + (c >> 16) + (c & 0xFFFF) + tick), c, tick)
        return buf

    def answer(self, frame: bytes) -> Answer | None:
        if len(frame) < _ICMP + 10 or frame[12:14] != b"\x08\x00" or frame[23] != 1:
            return None
        i = _ETH + (frame[14] & 0x0F) * 4
        if i < _ICMP or len(frame) < i + 10 or frame[i] != 0:  # echo reply
            return None
        c, tick = struct.unpack_from("!IH", frame, i + 4)
        if c & SLOT_MASK != self._slot:
            return None
        ip = _U32.unpack_from(frame, 26)[0]
        host = self._host_index.get(ip)
        if host is None or self._cookie(host, 0, 0) != c:
            return None
        return Answer(host, 0, S_UP, tick & TICK_MASK, frame[22])


PROBE = ProbeType("icmp_echo", 3, IcmpEcho, lambda lo, hi: (bpf.ANY_ICMP,), tally.nothing,
                  ports=False)
