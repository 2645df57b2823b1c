"""What a worker does with each received frame: check it, find the plan it answers, time it,
record its answer in the shard's shared state bytes, and report what the answer newly tells.

Nothing a worker receives can end it: every frame is checked before any probe reads it
(frames.py), and whatever still goes wrong on one frame is counted and logged, and the worker
goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import structlog

from netscand.engine import clock, frames
from netscand.engine.probes import Answer
from netscand.engine.shards import PlanState, ShardFinder
from netscand.engine.shm import R_HOST, R_PORT, S_NONE, S_OPEN, S_UNREACH, S_UP, pack_result

log = structlog.get_logger()

LOG_EVERY = 10.0  # at most one line per worker this often about frames that broke a parser


class Replies:
    def __init__(self, index: int, finder: ShardFinder, emit: Callable[[bytes], None],
                 malformed: list[int], matched: int) -> None:
        """`malformed` and `matched` go on from the counts of this worker index's previous life."""
        self.index = index
        self.finder = finder
        self.emit = emit
        self.malformed = malformed  # frames dropped unread, by shm.MALFORMED reason
        self.matched = matched  # replies matched to a probe
        self.next_log = 0.0
        self.unlogged = 0  # parser errors since the last line about them

    def take(self, frame: bytes, plans: Iterable[PlanState]) -> None:
        """One received frame."""
        # The last line of defence: frames.check() leaves no frame a probe should trip on, but
        # if one still does, the worker must not die of it.
        try:
            hit = frames.take(frame, plans, self.malformed)
            if hit is not None:
                self._record(*hit)
        except Exception as exc:
            self._parser_error(exc, frame)

    def _parser_error(self, exc: Exception, frame: bytes) -> None:
        self.malformed[frames.PARSER_ERROR] += 1
        self.unlogged += 1
        now = clock.now()
        if now >= self.next_log:
            log.error("engine.frame_broke_parser", worker=self.index, error=repr(exc),
                      frame=frame[:96].hex(), since_last_line=self.unlogged)
            self.next_log, self.unlogged = now + LOG_EVERY, 0

    def _record(self, state: PlanState, a: Answer) -> None:
        p = state.plan
        self.matched += 1
        if a.tick >= 0:
            # The clock read now, not at the start of the worker's turn: fanout may hand this
            # worker a reply to a probe another worker sent after that start, in a later tick,
            # which would read as a reply a whole tick wrap (4.096 s) late.
            state.rtt.sample(clock.since(a.tick, clock.now()))
        shard, off = divmod(p.index(a.host, a.port), p.shard_size)
        states = self.finder.states(p.gen, shard)
        prev = S_NONE if states is None else states[off]
        if states is not None and (prev == S_NONE or (prev == S_UNREACH and a.state != S_UNREACH)):
            states[off] = a.state
        # A port first heard filtered, then open (a UDP reply after a router's unreachable), is
        # open: the tally counts no open port, so this is its only report.
        if prev != S_NONE and not (prev == S_UNREACH and a.state == S_OPEN):
            return
        ip = p.hosts[a.host]
        if a.state == S_OPEN:
            self.emit(pack_result(R_PORT, state=S_OPEN, ttl=a.ttl, flags=a.flags, plan_gen=p.gen,
                                  ip=ip, port=p.ports[a.port], win=a.win, ipid=a.ipid, opts=a.opts))
        elif a.state == S_UP:
            self.emit(pack_result(R_HOST, plan_gen=p.gen, ip=ip, mac=a.mac))
