"""TCP SYN (half-open) probe: SYN-ACK means open, RST closed, ICMP unreachable filtered.

The frame is a pre-built Ethernet/IPv4/TCP template with the options a Linux connect() offers
(MSS, SACK permitted, timestamps, window scale): a stack only echoes the options it is offered,
so these make the SYN-ACK show the stack's option order, the OS guess's strongest evidence;
per probe only the destination MAC, address, ports, sequence number, IP ID and both checksums are
patched, with checksums updated incrementally from the template's precomputed sums.

The template is built from a SynShape (TTL, TOS, DF, window, flags, options): this probe's own,
or the kernel's connect() SYN for tcp_syn_kernel, which shares the matching of replies here and
reads its send tick from elsewhere (_tick).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, NamedTuple

from netscand.engine import bpf, tally
from netscand.engine.checksum import finish, ones_sum
from netscand.engine.clock import TICK_MASK
from netscand.engine.cookie import HASH_MASK, SLOT_MASK, Cookies
from netscand.engine.plan import Plan
from netscand.engine.probes.base import TTL, Answer, ProbeType
from netscand.engine.shm import S_CLOSED, S_OPEN, S_UNREACH
from netscand.engine.synshape import SynShape

WINDOW = 1024

_ETH = 14
_IP_ID, _IP_SUM, _IP_DST = _ETH + 4, _ETH + 10, _ETH + 16
_TCP = _ETH + 20
_TCP_SUM = _TCP + 16
# MSS 1460, SACK permitted, timestamps (our value fixed, echo 0), NOP, window scale 7.
_OPTIONS = bytes.fromhex("020405b4" "0402" "080a" "6e736400" "00000000" "01" "030307")
SCANNER_SHAPE = SynShape(TTL, 0, False, WINDOW, 0x02, _OPTIONS)
_PORTS_SEQ = struct.Struct("!IHHI")  # destination address, source port, dest port, sequence
_U16 = struct.Struct("!H")
_TCP_HDR = struct.Struct("!HHIIBBH")
_U32 = struct.Struct("!I")
# frames() writes a frame as big-endian 16-bit words (every header field here is whole words):
# the word index of each field it patches.
_W_MAC, _W_IP_ID, _W_IP_SUM, _W_DST = 0, _IP_ID // 2, _IP_SUM // 2, _IP_DST // 2
_W_SPORT, _W_DPORT, _W_SEQ, _W_TCP_SUM = _W_DST + 2, _W_DST + 3, _W_DST + 4, _TCP_SUM // 2
if TYPE_CHECKING:  # numpy is imported by frames() alone: every command imports this module
    import numpy as np
    import numpy.typing as npt

    Ints = npt.NDArray[np.int64]
# Unreachable codes that mean a filter, as nmap reads them: host/protocol/port unreachable,
# and administratively prohibited (9, 10, 13).
FILTER_CODES = frozenset({1, 2, 3, 9, 10, 13})


class _Columns(NamedTuple):
    """A probe's template, hosts and ports as arrays, for frames()."""

    template: npt.NDArray[np.uint16]  # the frame as big-endian words
    host_words: npt.NDArray[np.uint16]  # per host index: its MAC's 3 words, its address's 2
    host_sums: Ints  # per host index: its address's 2 words summed (both checksums add them)
    adds: npt.NDArray[np.uint64]  # per host index: cookie secrets
    mul: np.uint64
    ports: Ints  # per port index: the port


class TcpSyn:
    def __init__(self, plan: Plan, shape: SynShape = SCANNER_SHAPE) -> None:
        self.plan = plan
        self._key, self._slot = plan.key, plan.slot
        # Public: the bulk matcher of RSTs (rstbatch.py) computes the same cookies over arrays.
        self.cookies = Cookies(plan.key, plan.slot, plan.hosts)
        self._adds, self._mul = self.cookies.adds, self.cookies.mul
        self._hosts = plan.hosts
        self._macs = plan.macs
        self._ports = plan.ports
        self._host_index = {ip: i for i, ip in enumerate(plan.hosts)}
        self._port_index = {p: i for i, p in enumerate(plan.ports)}
        # Options are whole 32-bit words (the data offset counts words): a kernel's always are.
        options = shape.options + b"\0" * (-len(shape.options) % 4)
        tcp_len = 20 + len(options)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, shape.tos, 20 + tcp_len, 0, 0x4000 if shape.df else 0,
                         shape.ttl, 6, 0, plan.src_ip.to_bytes(4, "big"), b"\0\0\0\0")
        tcp = struct.pack("!HHIIBBHHH", 0, 0, 0, 0, (tcp_len // 4) << 4, shape.flags, shape.window, 0, 0) + options
        self._buf = bytearray(b"\0" * 6 + plan.src_mac + b"\x08\x00" + ip + tcp)
        self._ip_sum = ones_sum(ip)
        pseudo = plan.src_ip.to_bytes(4, "big") + b"\0\0\0\x06" + tcp_len.to_bytes(2, "big")
        self._tcp_sum = ones_sum(pseudo + tcp)
        self._columns: _Columns | None = None  # built by the first frames()

    def frame(self, host: int, port: int, tick: int) -> bytearray:
        # The default scan's hot path, so _patch's statements are inlined here (with the IP ID
        # the sequence's high half and nothing else in the TCP header): the call alone cost ~3%
        # of a probe's send. So is cookie.mix's. A change to one is a change to both.
        buf = self._buf
        dst = self._hosts[host]
        dport = self._ports[port]
        sport = self.plan.sport_base + (tick & TICK_MASK)
        seq = ((((dport << 16 | sport) + self._adds[host]) * self._mul >> 32) & HASH_MASK) | self._slot
        ipid = seq >> 16
        buf[0:6] = self._macs[host]
        _PORTS_SEQ.pack_into(buf, _IP_DST, dst, sport, dport, seq)
        hi, lo = dst >> 16, dst & 0xFFFF
        _U16.pack_into(buf, _IP_ID, ipid)
        _U16.pack_into(buf, _IP_SUM, finish(self._ip_sum + hi + lo + ipid))
        _U16.pack_into(buf, _TCP_SUM, finish(self._tcp_sum + hi + lo + sport + dport + ipid + (seq & 0xFFFF)))
        return buf

    def frames(self, hosts: Ints, ports: Ints, tick: int, rows: npt.NDArray[np.uint8],
               lengths: npt.NDArray[np.uintp]) -> None:
        """frame() for each (hosts[i], ports[i]) at one tick, written into rows[i] (a sender's
        rows, sockets.Sender.rows) with lengths[i] set: the same bytes, built over arrays. Only
        this class's frames: a subclass's frame() patches more (tcp_syn_kernel's)."""
        import numpy as np

        c = self._columns if self._columns is not None else self._build_columns()
        n = len(hosts)
        sport = self.plan.sport_base + (tick & TICK_MASK)
        dport = c.ports[ports]
        # cookie.mix over arrays (and frame()'s inline copy of it): uint64 products wrap as
        # mod 2**64, whose bits 34-63 are the cookie's hashed bits.
        seq = ((((dport << 16 | sport).astype(np.uint64) + c.adds[hosts]) * c.mul >> np.uint64(32))
               & np.uint64(HASH_MASK))
        seq = seq.astype(np.int64) | self._slot
        ipid, seq_lo, addr = seq >> 16, seq & 0xFFFF, c.host_sums[hosts]
        words = rows[:, : 2 * len(c.template)].view(">u2")
        words[:] = c.template
        picked = c.host_words[hosts]
        words[:, _W_MAC : _W_MAC + 3] = picked[:, :3]
        words[:, _W_DST : _W_DST + 2] = picked[:, 3:]
        words[:, _W_SPORT] = sport
        words[:, _W_DPORT] = dport
        words[:, _W_IP_ID] = words[:, _W_SEQ] = ipid  # the IP ID is the sequence's high half
        words[:, _W_SEQ + 1] = seq_lo
        words[:, _W_IP_SUM] = finish(self._ip_sum + addr + ipid)  # checksum's finish works on arrays too
        words[:, _W_TCP_SUM] = finish(self._tcp_sum + sport + addr + dport + ipid + seq_lo)
        lengths[:n] = len(self._buf)

    def _build_columns(self) -> _Columns:
        import numpy as np

        words = np.frombuffer(b"".join(mac + ip.to_bytes(4, "big") for mac, ip in zip(self._macs, self._hosts)),
                              ">u2").reshape(len(self._hosts), 5)
        self._columns = _Columns(np.frombuffer(bytes(self._buf), ">u2"), words,
                                 words[:, 3].astype(np.int64) + words[:, 4], np.array(self._adds, np.uint64),
                                 np.uint64(self._mul), np.array(self._ports, np.int64))
        return self._columns

    def _patch(self, host: int, dst: int, dport: int, sport: int, seq: int, ipid: int, tcp_words: int) -> bytearray:
        """The template addressed to `host`, for a subclass's frame() (frame() has it inline);
        `tcp_words` is the sum of whatever else the caller patched into the TCP header (zero in
        the template), for its checksum."""
        buf = self._buf
        buf[0:6] = self._macs[host]
        _PORTS_SEQ.pack_into(buf, _IP_DST, dst, sport, dport, seq)
        hi, lo = dst >> 16, dst & 0xFFFF
        _U16.pack_into(buf, _IP_ID, ipid)
        _U16.pack_into(buf, _IP_SUM, finish(self._ip_sum + hi + lo + ipid))
        _U16.pack_into(buf, _TCP_SUM, finish(self._tcp_sum + hi + lo + sport + dport + (seq >> 16)
                                             + (seq & 0xFFFF) + tcp_words))
        return buf

    def _tick(self, dst: int, our_port: int, options: bytes) -> int:
        """The send tick a reply echoes: here the low bits of our source port. `options` are a
        SYN-ACK's or RST's TCP options (empty for a quote in an ICMP error)."""
        return our_port & TICK_MASK

    def answer(self, frame: bytes) -> Answer | None:
        if len(frame) < 54 or frame[12:14] != b"\x08\x00":
            return None
        ihl = (frame[14] & 0x0F) * 4
        if ihl < 20:
            return None
        proto = frame[23]
        if proto == 6:
            return self._tcp(frame, _ETH + ihl)
        if proto == 1:
            return self._icmp(frame, _ETH + ihl)
        return None

    def _match(self, ip: int, dport: int, sport: int, seq: int) -> tuple[int, int] | None:
        if seq & SLOT_MASK != self._slot:
            return None
        host = self._host_index.get(ip)
        port = self._port_index.get(dport)
        if host is None or port is None or self.cookies(host, dport, sport) != seq:
            return None
        return host, port

    def _tcp(self, frame: bytes, t: int) -> Answer | None:
        if len(frame) < t + 20:
            return None
        sport, dport, _, ack, off, flags, win = _TCP_HDR.unpack_from(frame, t)
        end = t + (off >> 4) * 4  # of the header, options included
        if end < t + 20 or end > len(frame):
            return None
        ip = _U32.unpack_from(frame, 26)[0]
        hit = self._match(ip, sport, dport, (ack - 1) & 0xFFFFFFFF)
        if hit is None:
            return None
        if flags & 0x12 == 0x12:
            state = S_OPEN
        elif flags & 0x04:
            state = S_CLOSED
        else:
            return None
        # Only a SYN-ACK's options tell anything (the OS guess, tcp_syn_kernel's tick): a RST's
        # are not copied, and closed ports are most replies of a scan.
        opts = bytes(frame[t + 20 : end]) if state == S_OPEN else b""
        return Answer(hit[0], hit[1], state, self._tick(ip, dport, opts), frame[22], win, flags,
                      _U16.unpack_from(frame, 18)[0], opts)

    def _icmp(self, frame: bytes, i: int) -> Answer | None:
        # Type 3 quotes our IP header and at least 8 bytes of our TCP header (ports, sequence).
        inner = i + 8
        if len(frame) < inner + 28 or frame[i] != 3 or frame[i + 1] not in FILTER_CODES:
            return None
        if frame[inner + 9] != 6:
            return None
        t = inner + (frame[inner] & 0x0F) * 4
        if t < inner + 20 or len(frame) < t + 8:
            return None
        ip = _U32.unpack_from(frame, inner + 16)[0]
        sport, dport, seq = struct.unpack_from("!HHI", frame, t)
        hit = self._match(ip, dport, sport, seq)
        if hit is None:
            return None
        return Answer(hit[0], hit[1], S_UNREACH, self._tick(ip, sport, b""), frame[22])


def tcp_replies(lo: int, hi: int) -> bpf.Clause:
    """Unfragmented TCP with ACK or RST to our source ports: never our own SYN seen on lo."""
    return bpf.ipv4(6) + bpf.to_ports(lo, hi) + ((bpf.LD_BX, 0, 0, bpf.ETH + 13), (bpf.JSET, "accept", "next", 0x14))


PROBE = ProbeType("tcp_syn", 1, TcpSyn, lambda lo, hi: (tcp_replies(lo, hi), bpf.ANY_ICMP),
                  tally.ports, port_states=True)
