"""What a shard's probes cost and earned: probes sent (first pass and retries), answered,
retried, and recovered by a retry (answered only after one: the direct evidence of loss).

Counted from the shard's state bytes at the ends of passes, never per probe: an unpaced shard
keeps a copy of its states at the start of each retry pass (ShardRun.retry), and the counts are
bytes.count over those copies and the final states; a paced shard's schedule counts per host as
it sends, which is one probe per host per gap (paced.py). A probe counted as retried may still
be skipped by the sender, when its late answer lands between its pass's start and its turn: it
is then counted as recovered too, so loss reads a little high, never low.

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


def by_host(plan: Plan, shard: int, states: bytes, before: list[bytes]) -> Iterator[tuple[int, Counts]]:
    """(host index, its counts) per host that answered anything in an unpaced shard."""
    for (host, _, seg), *earlier in zip(plan.rows(shard, states), *(plan.rows(shard, b) for b in before)):
        if seg.count(0) < len(seg):
            yield host, counted(seg, [row[2] for row in earlier])
