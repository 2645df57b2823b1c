"""Bulk matching of what nearly every reply of a SYN scan is: a plain RST from a closed port.

A full-range scan hears one RST per closed port, millions of them, and matching each through the
per-frame path (frames.take, the probe's answer(), replies' record) costs microseconds of Python
apiece. Here a block's frames are read as one array: the ones of the fixed shape (Ethernet,
IPv4 without options, 40 bytes, TCP without options, RST without SYN) are picked out, their
checksums verified and their cookies checked against each running tcp_syn plan, all in numpy;
the state bytes they close are written per shard in one step. What this does not match goes to
the per-frame path unchanged (SYN-ACKs, ICMP, ARP, UDP, other probes' replies, anything of
another shape, damaged or foreign), so the per-frame path keeps its counts of malformed frames,
and a frame reads the same either way: tests/engine/test_rstbatch.py proves the two paths leave
the same state bytes, records and counts.

Every check here is the per-frame path's for a frame of this shape, restated over arrays:
frames.check (lengths), TcpSyn.answer and _match (slot bits, host and port, cookie; a change to
one is a change to both), frames.checksum_ok (IPv4 header and TCP sums, the offload case
included) and replies' rule for a closed port's state byte. The shape makes every length fixed,
so the reading is total: only the first 54 bytes of frames at least that long are looked at.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from netscand.engine.clock import TICK_MASK
from netscand.engine.cookie import SLOT_BITS, SLOT_MASK
from netscand.engine.probes.tcp_syn import TcpSyn
from netscand.engine.ring import Frames
from netscand.engine.shards import PlanState, ShardFinder
from netscand.engine.shm import PLAN_SLOTS, S_CLOSED, S_NONE, S_UNREACH

Ints = npt.NDArray[np.int64]

# Measured (bench/replies.py): a batch's numpy calls cost ~40 us whatever its size, a frame's
# own share ~0.3 us, and the per-frame path ~3 us a frame; under 16 frames (a slow scan's blocks,
# retired 2 ms after their first reply) the per-frame path is the cheaper.
LEAST = 16
SHAPE = 54  # Ethernet, IPv4 and TCP headers, neither with options: all a plain RST holds
_BYTES = np.arange(SHAPE)
# The shape's fixed bytes, under a mask: IPv4 (ethertype), version 4 with a 20-byte header, a
# total length of 40 (so no more than the frame, which holds at least 54 bytes), TCP, a data
# offset of 5 words, RST without SYN.
_AT = np.array([12, 13, 14, 16, 17, 23, 46, 47])
_MASK = np.array([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xF0, 0x06], np.uint8)
_FIXED = np.array([0x08, 0x00, 0x45, 0x00, 40, 6, 0x50, 0x04], np.uint8)
# The frame's big-endian 16-bit words (word k: bytes 2k, 2k+1), summed and combined in one
# product. Checksums (frames.checksum_ok, mod 0xFFFF): the IPv4 header's words; the TCP
# segment's with the pseudo-header's (both addresses, the protocol and the TCP length, 6 + 20);
# for the offload case, the TCP field less the pseudo-header's.
_SUMS = np.zeros((SHAPE // 2, 3), np.int64)
_SUMS[7:17, 0] = 1
_SUMS[13:27, 1] = 1
_SUMS[25, 2], _SUMS[13:17, 2] = 1, -1
_PSEUDO = np.array([0, 6 + 20, -(6 + 20)], np.int64)
_FOLD = 0xFFFF
# The source address, the acknowledgement number, and the ports as the cookie mixes them (the
# RST's source port is our probe's destination port).
_FIELDS = np.zeros((SHAPE // 2, 3), np.int64)
_FIELDS[13:15, 0] = _FIELDS[21:23, 1] = _FIELDS[17:19, 2] = (1 << 16, 1)
_SPORT, _DPORT = 17, 18
_HASHED_FROM = np.uint64(32 + SLOT_BITS)  # the product's bits a cookie keeps: 34-63 (cookie.mix)
_CLOSES = np.zeros(256, bool)  # the states a RST closes: replies.Replies._record's rule
_CLOSES[[S_NONE, S_UNREACH]] = True


@dataclass(frozen=True)
class Hits:
    """The RSTs of one batch that answer one plan: their frames' positions in the batch, and
    the host and port index each answers."""

    state: PlanState
    at: Ints
    host: Ints
    port: npt.NDArray[np.int32]
    tick: int  # the send tick the last of them echoes

    def split(self, pairs: Collection[tuple[int, int]]) -> tuple[Hits, list[int]]:
        """These hits but those answering a (host, port) of `pairs`, and those ones' positions."""
        out = np.isin(self.host * 0x10000 + self.port, [h * 0x10000 + p for h, p in pairs])
        keep = ~out
        kept = Hits(self.state, self.at[keep], self.host[keep], self.port[keep], self.tick)
        return kept, self.at[out].tolist()


@dataclass(frozen=True)
class _Tables:
    """One tcp_syn plan's lookups as arrays: its probe's dicts and cookie secrets."""

    probe: TcpSyn
    ips: Ints  # its distinct host addresses, sorted
    hosts: Ints  # each one's host index: the probe's (a repeated address: its last index)
    ports: npt.NDArray[np.int32]  # by port number, its port index; -1 for a port not the plan's
    adds: npt.NDArray[np.uint64]  # by host index
    mul: np.uint64
    slot: int

    @classmethod
    def of(cls, probe: TcpSyn) -> _Tables:
        plan, cookies = probe.plan, probe.cookies
        by_ip = {ip: i for i, ip in enumerate(plan.hosts)}
        ips = sorted(by_ip)
        by_port = {p: i for i, p in enumerate(plan.ports)}
        ports = np.full(0x10000, -1, np.int32)
        ports[list(by_port)] = list(by_port.values())
        return cls(probe, np.array(ips, np.int64), np.array([by_ip[ip] for ip in ips], np.int64), ports,
                   np.array(cookies.adds, np.uint64), np.uint64(cookies.mul), cookies.slot)


class RstBatch:
    """The matcher, with each running tcp_syn plan's tables built once."""

    def __init__(self, least: int = LEAST) -> None:
        """`least`: the fewest frames a batch is matched in bulk from."""
        self.least = least
        self._tables: dict[int, _Tables] = {}  # by plan generation

    def match(self, batch: Frames, plans: Sequence[PlanState]) -> tuple[list[Hits], list[int]]:
        """The plain RSTs answering a tcp_syn plan, per plan; and the positions of every other
        frame, in order: the per-frame path's."""
        n = len(batch.starts)
        if n < self.least or len(batch.data) < SHAPE or not any(type(ps.probe) is TcpSyn for ps in plans):
            return [], list(range(n))
        starts, lengths = np.array(batch.starts, np.int64), np.array(batch.lengths, np.int64)
        # Each frame's first 54 bytes, cut at the buffer's end: a shorter frame's row holds the
        # next frame's bytes or repeats the last one, and is dropped by its length below.
        at = np.minimum(starts[:, None] + _BYTES, len(batch.data) - 1)
        rows = np.frombuffer(batch.data, np.uint8)[at]
        w = rows.view(">u2").astype(np.int64)
        zero = (w @ _SUMS + _PSEUDO) % _FOLD == 0
        # The shape, and the checksums: the IPv4 header's, and the TCP one or the offload case
        # (frames.checksum_ok).
        at = np.flatnonzero((lengths >= SHAPE) & ((rows[:, _AT] & _MASK) == _FIXED).all(1)
                            & zero[:, 0] & (zero[:, 1] | zero[:, 2]))
        w = w[at]
        ip, ack, mixed = (w @ _FIELDS).T
        seq = (ack - 1) & 0xFFFFFFFF  # a RST acknowledges our SYN's cookie + 1
        slots, hashed = seq & SLOT_MASK, (seq >> SLOT_BITS).astype(np.uint64)
        mixed = mixed.astype(np.uint64)
        free = np.ones(len(at), bool)
        hits: list[Hits] = []
        before: list[PlanState] = []  # plans of other probes, which frames.take offers a frame first
        for ps in plans:
            if type(ps.probe) is not TcpSyn:
                before.append(ps)
                continue
            t = self._tables_of(ps.probe)
            if not t.ips.size:
                continue
            # Over every frame, not only this plan's slot's: an array's op costs about the same
            # at 10 or 300 elements, and indexing out a subset first would be more ops.
            pos = np.minimum(np.searchsorted(t.ips, ip), t.ips.size - 1)
            host, port = t.hosts[pos], t.ports[w[:, _SPORT]]
            # cookie.mix over arrays: uint64 products wrap as mod 2**64, whose bits 34-63 are
            # the cookie's hashed bits.
            good = (free & (slots == t.slot) & (t.ips[pos] == ip) & (port >= 0)
                    & ((mixed + t.adds[host]) * t.mul >> _HASHED_FROM == hashed))
            if before and good.any():
                good[good] = _unclaimed(batch, at[good], before)
            mine = np.flatnonzero(good)
            if mine.size:
                free[mine] = False
                # TcpSyn._tick: our source port, the reply's destination, carries the send tick.
                hits.append(Hits(ps, at[mine], host[mine], port[mine], int(w[mine[-1], _DPORT]) & TICK_MASK))
        self._forget(plans)
        rest = np.ones(n, bool)
        for h in hits:
            rest[h.at] = False
        return hits, np.flatnonzero(rest).tolist()

    def _tables_of(self, probe: TcpSyn) -> _Tables:
        t = self._tables.get(probe.plan.gen)
        if t is None or t.probe is not probe:
            t = self._tables[probe.plan.gen] = _Tables.of(probe)
        return t

    def _forget(self, plans: Sequence[PlanState]) -> None:
        """Drop the tables of plans gone (a worker runs at most a plan per slot)."""
        if len(self._tables) > PLAN_SLOTS:
            live = {ps.plan.gen for ps in plans}
            self._tables = {gen: t for gen, t in self._tables.items() if gen in live}


def _unclaimed(batch: Frames, positions: Ints, before: Sequence[PlanState]) -> npt.NDArray[np.bool_]:
    """Which of these frames no plan of `before` answers: frames.take would give one it answers
    to that plan (only a forged frame is both; a probe that raises on one leaves it per frame,
    where it is counted)."""
    out = np.ones(len(positions), bool)
    for k, i in enumerate(positions.tolist()):
        frame = batch.frame(i)
        try:
            out[k] = all(ps.probe.answer(frame) is None for ps in before)
        except Exception:
            out[k] = False
    return out


def record(hits: Hits, finder: ShardFinder) -> None:
    """Close the ports the hits answer: a state byte becomes S_CLOSED where it was S_NONE or
    S_UNREACH (replies.Replies._record's rule; a closed port reports nothing until its tally)."""
    if not len(hits.at):
        return
    p = hits.state.plan
    # Plan.index is arithmetic on its arguments: over arrays it maps them all at once.
    shard, off = np.divmod(p.index(hits.host, hits.port), p.shard_size)  # type: ignore[arg-type]
    first = int(shard[0])
    # A block's replies are to probes sent moments apart: nearly always of one shard.
    if (shard == first).all():
        groups = [(first, off)]
    else:
        groups = [(s, off[shard == s]) for s in np.unique(shard).tolist()]
    for s, mine in groups:
        view = finder.states(p.gen, s)
        if view is None:
            continue  # the shard is done: its reply is counted, its states are gone
        states = np.frombuffer(view, np.uint8)
        states[mine[_CLOSES[states[mine]]]] = S_CLOSED
