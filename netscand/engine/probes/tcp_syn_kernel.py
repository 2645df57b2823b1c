"""TCP SYN shaped like this host's own connect() SYN (synshape.py), for scans that must not look
like a scanner: the kernel's TTL, TOS, DF, window, flags and options, kinds and order and
values; per probe a source port spread over the plan's range (even ports, as Linux >= 4.6's
connect() prefers them), a keyed-random IP ID, the keyed cookie as the sequence number (reply
matching as tcp_syn's, stateless), and the send tick where a real SYN carries a clock: in the
timestamp value, as Linux's, a 1 kHz count from a per-destination offset (Linux's per address
pair): TSval = ts_offset(key, destination) + 4 * tick + a keyed 0-3 ms within the tick (the
tick is 4 ms: in 4 ms steps alone, two SYNs to one host would show a clock no Linux runs). A
SYN-ACK echoes it in TSecr, the tick read back as (TSecr - offset) // 4; a RST carries no
timestamp (tick -1). A forged TSecr only misreads the tick, as a forged port does tcp_syn's:
the target echoes both, and the cookie, not the tick, says a reply is ours.

Without the kernel's SYN (lo down, no raw socket) the plan is refused, never sent otherwise
shaped: the build raises OSError, which the intake reports as an interface refusal.
"""

from __future__ import annotations

import struct
from hashlib import blake2b

from netscand.engine import bpf, synshape, tally
from netscand.engine.clock import TICK_MASK
from netscand.engine.plan import Plan, PlanError
from netscand.engine.probes.base import ProbeType
from netscand.engine.probes.tcp_syn import TcpSyn, tcp_replies

_OPTIONS_AT = 14 + 20 + 20  # in the frame: Ethernet, IPv4 and TCP headers before the options
_PICK = struct.Struct("!IHI")  # destination, port, tick: what a probe's source port and IP ID hash
_U32 = struct.Struct("!I")


def ts_offset(key: bytes, dst: int) -> int:
    """The timestamp clock's offset towards one destination (keyed: a reply cannot forge a tick)."""
    return int.from_bytes(blake2b(dst.to_bytes(4, "big"), key=key, digest_size=4, person=b"tsoffset").digest(), "big")


class TcpSynKernel(TcpSyn):
    def __init__(self, plan: Plan, shape: synshape.SynShape | None = None) -> None:
        """`shape`: the kernel's SYN, captured for the plan's interface unless given."""
        if not plan.sport_lo:
            raise PlanError(f"slot {plan.slot}: a kernel-shaped SYN needs a source port range")
        if shape is None:
            shape = synshape.shape(synshape.mtu(plan.ifindex) - synshape.HEADERS)
        ts = shape.ts_at
        if ts >= 0:  # the template's timestamp value is zero: each probe's is patched in and summed
            shape = shape._replace(options=shape.options[:ts] + bytes(4) + shape.options[ts + 4 :])
        super().__init__(plan, shape)
        self._ts_at = _OPTIONS_AT + ts if ts >= 0 else -1
        even = plan.sport_lo + (plan.sport_lo & 1)
        self._sports = range(even, plan.sport_hi + 1, 2) or range(plan.sport_lo, plan.sport_lo + 1)

    def frame(self, host: int, port: int, tick: int) -> bytearray:
        dst, dport = self._hosts[host], self._ports[port]
        pick = blake2b(_PICK.pack(dst, dport, tick & 0xFFFFFFFF), key=self._key, digest_size=5,
                       person=b"kernel-syn").digest()
        sport = self._sports[int.from_bytes(pick[:2], "big") % len(self._sports)]
        seq = self.cookies(host, dport, sport)
        words = 0
        if self._ts_at >= 0:
            tsval = (ts_offset(self._key, dst) + 4 * tick + (pick[4] & 3)) & 0xFFFFFFFF
            _U32.pack_into(self._buf, self._ts_at, tsval)
            words = (tsval >> 16) + (tsval & 0xFFFF)
        return self._patch(host, dst, dport, sport, seq, int.from_bytes(pick[2:4], "big"), words)

    def _tick(self, dst: int, our_port: int, options: bytes) -> int:
        """From a SYN-ACK's TSecr; -1 for a reply without one (a RST, an ICMP error's quote)."""
        for at, kind, length in synshape.option_spans(options):
            if kind == synshape.TS_KIND and length == 10:
                sent = (_U32.unpack_from(options, at + 6)[0] - ts_offset(self._key, dst)) & 0xFFFFFFFF
                return (sent >> 2) & TICK_MASK
        return -1


def syn_ack_or_rst(lo: int, hi: int) -> bpf.Clause:
    """Unfragmented TCP SYN-ACK or RST to ports [lo, hi]: the replies to a SYN from the plan's
    range. Narrower than tcp_replies' every ACK: the range is the kernel's own ephemeral one,
    whose connections' traffic the workers must not be woken for."""
    return bpf.ipv4(6) + bpf.to_ports(lo, hi) + (
        (bpf.LD_BX, 0, 0, bpf.ETH + 13), (bpf.JSET, "accept", 0, 0x04),
        (bpf.AND, 0, 0, 0x12), (bpf.JEQ, "accept", "next", 0x12))


# Registered after tcp_syn (probes/__init__.py), so that the scan layer's port scan of "tcp"
# stays tcp_syn: this one is asked for by name, by paced scans.
PROBE = ProbeType("tcp_syn_kernel", 6, TcpSynKernel, lambda lo, hi: (tcp_replies(lo, hi), bpf.ANY_ICMP),
                  tally.ports, port_states=True, protocol="tcp",
                  range_replies=lambda lo, hi: (syn_ack_or_rst(lo, hi),))
