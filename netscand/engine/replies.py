"""What a worker does with each received frame: check it, find the plan it answers, time it,
record its answer in the shard's shared state bytes, and report what the answer newly tells.
A block's plain RSTs to SYN probes, most of a port scan's replies, are matched and recorded in
bulk (rstbatch.py); every other frame one by one.

Nothing a worker receives can end it: every frame is checked before any probe reads it
(frames.py), and whatever still goes wrong on one frame is counted and logged, and the worker
goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import structlog

from netscand.engine import clock, frames, rstbatch
from netscand.engine.probes import Answer
from netscand.engine.ring import Frames
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
        self.rsts = rstbatch.RstBatch()

    def take(self, frame: bytes, plans: Iterable[PlanState]) -> None:
        """One received frame."""
        hit = self._answer(frame, plans)
        if hit is not None:
            self._record_safely(frame, hit)

    def take_batch(self, batch: Frames, plans: Sequence[PlanState]) -> None:
        """A block's frames: the plain RSTs answering tcp_syn plans in bulk (rstbatch.py), every
        other frame as take() does."""
        try:
            hits, rest = self.rsts.match(batch, plans)
        except Exception as exc:  # the last line of defence, as for one frame: they go one by one
            self._parser_error(exc, batch.data[:96])
            hits, rest = [], list(range(len(batch.starts)))
        if not hits:
            for i in rest:
                self.take(batch.frame(i), plans)
            return
        later = self._answers(batch, rest, plans)
        if later:
            # Whichever answer to a probe comes first sets its state byte (an open port's
            # SYN-ACK, then a RST: still open, and reported). A RST answering a probe that a
            # frame left to the per-frame path answers too goes that way as well, in order.
            touched: dict[int, set[tuple[int, int]]] = {}
            for _, _, (state, a) in later:
                touched.setdefault(state.plan.gen, set()).add((a.host, a.port))
            moved: list[int] = []
            for k, h in enumerate(hits):
                pairs = touched.get(h.state.plan.gen)
                if pairs:
                    hits[k], out = h.split(pairs)
                    moved += out
            later += self._answers(batch, moved, plans)
            later.sort(key=lambda one: one[0])
        for h in hits:
            self.matched += len(h.at)
            try:
                rstbatch.record(h, self.finder)
            except Exception as exc:  # unrecorded, the probes are asked again by the next pass
                self._parser_error(exc, batch.data[:96])
                continue
            # One sample per plan and block, not one per reply: the timeout follows a mean.
            if len(h.at):
                h.state.rtt.sample(clock.since(h.tick, clock.now()))
        for _, frame, hit in later:
            self._record_safely(frame, hit)

    def _answers(self, batch: Frames, positions: list[int],
                 plans: Sequence[PlanState]) -> list[tuple[int, bytes, tuple[PlanState, Answer]]]:
        """The frames at `positions` that answer a plan, with their positions, not yet recorded."""
        out = []
        for i in positions:
            frame = batch.frame(i)
            hit = self._answer(frame, plans)
            if hit is not None:
                out.append((i, frame, hit))
        return out

    def _answer(self, frame: bytes, plans: Iterable[PlanState]) -> tuple[PlanState, Answer] | None:
        # The last line of defence: frames.check() leaves no frame a probe should trip on, but
        # if one still does, the worker must not die of it.
        try:
            return frames.take(frame, plans, self.malformed)
        except Exception as exc:
            self._parser_error(exc, frame)
            return None

    def _record_safely(self, frame: bytes, hit: tuple[PlanState, Answer]) -> None:
        try:
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
