"""What a shard's probes cost and earned: probes sent (first pass and retries), answered,
retried, and recovered by a retry (answered only after one: the direct evidence of loss).

Counted from the shard's state bytes at the ends of passes, never per probe: an unpaced shard
keeps a copy of its states at the start of each retry pass (ShardRun.retry), and the counts are
bytes.count over those copies and the final states; a paced shard's schedule counts per host as
it sends, which is one probe per host per gap (paced.py). A probe counted as retried may still
be skipped by the sender, when its late answer lands between its pass's start and its turn: it
is then counted as recovered too, so loss reads a little high, never low.

A shard resumed after a restart (or its worker's death) starts with blank states: the probes an
earlier life had answered are asked again in its retry passes and would read as recovered (a
clean shard resumed at 60 % would read a loss near 0.7). Its counts keep only probes sent and
answered, neither retried nor recovered: the scan's loss estimate then rests on the other shards
(and reads a little low, by the resumed shards' share of the answers).

The counts travel in a result record's options bytes (COVER): a shard's on its R_DONE, a host's
on an R_COVER per host that answered anything in the shard (the hosts a tally reports).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from netscand.engine.plan import Plan

COVER = struct.Struct("<IIII")  # sent, answered, retried, recovered


class Counts(NamedTuple):
    sent: int = 0  # first pass and retries
    answered: int = 0  # probes with any answer (open, closed, unreachable, up)
    retried: int = 0  # probes sent again for want of an answer
    recovered: int = 0  # answered only after a retry

    def plus(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(self, other, strict=True)))

    def without_retries(self) -> Counts:
        """A resumed shard's counts (Shards.start): its probes sent and answered are facts,
        but which of its answers a retry recovered is not known, so it gives no loss evidence."""
        return self._replace(retried=0, recovered=0)


def pack(counts: Counts) -> bytes:
    return COVER.pack(*(min(c, 0xFFFFFFFF) for c in counts))


def unpack(opts: bytes) -> Counts:
    """The counts a record carries; none (zeros) from a record that carries none."""
    return Counts._make(COVER.unpack(opts)) if len(opts) == COVER.size else Counts()


def counted(states: bytes, before: list[bytes]) -> Counts:
    """Counts of probes whose final states are `states`, and whose states at the start of each
    retry pass were `before` (the same probes, in the same order)."""
    answered = len(states) - states.count(0)
    retried = sum(b.count(0) for b in before)
    first = len(before[0]) - before[0].count(0) if before else answered
    return Counts(len(states) + retried, answered, retried, answered - first)


# A probe's code (by_host): answered at the end, answered when the first retry pass began (or at
# the end, without one), and how many retry passes it was unanswered at the start of, to 63.
_FINAL, _FIRST, _PASSES = 0x80, 0x40, 0x3F
_ANSWERED = bytes([0] + [1] * 255)  # translate tables: 1 for an answered state, 1 for a silent one
_SILENT = bytes([1] + [0] * 255)
_NOT_FINAL = bytes(v for v in range(256) if not v & _FINAL)  # deleted, they leave the probes answered
_NOT_FIRST = bytes(v for v in range(256) if not v & _FIRST)
_RETRIED = bytes(v & _PASSES for v in range(256))


def _codes(states: bytes, before: list[bytes]) -> bytes:
    """Each probe's code, built whole-shard in C: the 0/1 masks as big integers, shifted into
    their bits and added (no carry: each part stays within its bits)."""
    code = int.from_bytes(states.translate(_ANSWERED), "big") * _FINAL
    code += int.from_bytes((before[0] if before else states).translate(_ANSWERED), "big") * _FIRST
    for snapshot in before[:_PASSES]:
        code += int.from_bytes(snapshot.translate(_SILENT), "big")
    return code.to_bytes(len(states), "big")


def by_host(plan: Plan, shard: int, states: bytes, before: list[bytes]) -> Iterator[tuple[int, Counts]]:
    """(host index, its counts) per host that answered anything in an unpaced shard. One pass
    over the hosts' rows of the probes' codes, as a tally's over the states: a /16 shard has
    65536 rows of one probe, whatever the retries. A probe's retries past 63 are not counted
    here (the API allows 10)."""
    for host, _, seg in plan.rows(shard, _codes(states, before)):
        if max(seg) < _FINAL:
            continue  # it answered nothing
        answered, first = len(seg.translate(None, _NOT_FINAL)), len(seg.translate(None, _NOT_FIRST))
        retried = sum(seg.translate(_RETRIED))
        yield host, Counts(len(seg) + retried, answered, retried, answered - first)
