"""ARP request probe: resolves on-link hosts, which proves them up and gives their MAC.

ARP has no field to carry a cookie; a reply counts when it is addressed to our address and comes
from one of the plan's hosts.
"""

from __future__ import annotations

import struct

from netscand.engine import bpf, tally
from netscand.engine.plan import Plan
from netscand.engine.probes.base import Answer, ProbeType
from netscand.engine.shm import S_UP

_TPA = 38
IPV4_OVER_ETHERNET = b"\x00\x01\x08\x00\x06\x04"  # hardware and protocol types and sizes
_U32 = struct.Struct("!I")


class Arp:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._hosts = plan.hosts
        self._host_index = {ip: i for i, ip in enumerate(plan.hosts)}
        self._src_ip = plan.src_ip.to_bytes(4, "big")
        self._buf = bytearray(b"\xff" * 6 + plan.src_mac + b"\x08\x06"
                              + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
                              + plan.src_mac + self._src_ip + b"\0" * 6 + b"\0" * 4)

    def frame(self, host: int, port: int, tick: int) -> bytearray:
        _U32.pack_into(self._buf, _TPA, self._hosts[host])
        return self._buf

    def answer(self, frame: bytes) -> Answer | None:
        if len(frame) < 42 or frame[12:14] != b"\x08\x06" or frame[20:22] != b"\x00\x02":
            return None
        if frame[14:20] != IPV4_OVER_ETHERNET:  # else the addresses are not where we read them
            return None
        if frame[38:42] != self._src_ip:
            return None
        host = self._host_index.get(_U32.unpack_from(frame, 28)[0])
        if host is None:
            return None
        return Answer(host, 0, S_UP, -1, mac=bytes(frame[22:28]))


REPLIES: bpf.Clause = ((bpf.LD_H, 0, 0, 12), (bpf.JEQ, 0, "next", 0x0806), (bpf.LD_H, 0, 0, 20),
                       (bpf.JEQ, "accept", "next", 2))
# Neighbours answer within milliseconds or not at all: a fixed short wait, whatever the scan's.
PROBE = ProbeType("arp", 2, Arp, lambda lo, hi: (REPLIES,), tally.nothing, ports=False,
                  resolves_neighbours=True, timeout_ms=500, retries=2)
