"""Shard lifecycle in a worker: a shard starts in a free shard slot, is sent in passes that take
turns with the other plans' runs, waits for late replies, is retried for what got none, and
finishes with its probe type's tally.

Two kinds of slot meet here: a plan slot (shm.PLAN_SLOTS, shared by all workers) holds a plan;
a shard slot (shm.SHARD_SLOTS per worker) holds the probe states of one shard of a plan in
progress. Each plan has at most one shard sending in a worker (its next one waits until that
pass is sent, while the previous one waits for late replies and retries), and a worker holds at
most PLAN_SHARDS shards of each plan at once. A paced plan's shards are the exception: each one
sends from its start to its end at its hosts' pace (paced.py), which lasts the whole scan, so
they all send at once (holding the next would cap the hosts probed at one shard per worker).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import structlog

from netscand.engine import clock, coverage
from netscand.engine import plan as plans
from netscand.engine.coverage import Counts
from netscand.engine.paced import Schedule
from netscand.engine.pacing import Pacer
from netscand.engine.permutation import Permutation
from netscand.engine.probes import PROBES, Probe, ProbeType
from netscand.engine.probes.tcp_syn import TcpSyn
from netscand.engine.rate import PER_BATCH, Decision, RateControl, Routes
from netscand.engine.rtt import RttEstimator
from netscand.engine.shm import (
    MARK_BASE,
    MARK_PASS_END,
    R_COVER,
    R_DONE,
    R_MARK,
    SHARD_KEY,
    SHARD_STATES,
    ShardHeader,
    Shared,
    pack_result,
    shard_header,
)
from netscand.engine.sockets import Sender, Tx

log = structlog.get_logger()

IDLE_WAIT = 0.05
LOG_EVERY = 5.0  # seconds between two engine.rate lines of one plan in one worker
# Probes of a pass between two checkpoints of its position (R_MARK): a few records a second per
# shard at full rate, and what a restart re-sends at most beyond the position stored.
MARK_EVERY = 4096
GRANT_WAIT = 0.005  # how often a pass that waits for its grant looks again
# The fewest probes a batch is built over arrays from (Shards._bulk). Measured (bench/sends.py):
# its numpy calls cost ~40 us whatever its size and a probe's own share ~0.3 us, against ~1.8 us
# a probe in the per-probe loop (the batch's sendmmsg apart); the two meet between 16 and 24.
BULK_LEAST = 24
_FREE = ShardHeader(0, 0, 0, 0)


class PlanState:
    """A worker's copy of one plan: its probe type and probe, transmitter, pacer and RTTs."""

    def __init__(self, plan: plans.Plan, send: Tx, routes: Routes | None = None) -> None:
        """`routes`: what the worker's loops learned per route, shared by its plans (rate.py)."""
        self.plan = plan
        self.ptype: ProbeType = PROBES[plan.kind]
        self.probe: Probe = self.ptype.build(plan)
        self.send = send
        # The plan's rate is split among the workers that share it; the worker's ceiling caps
        # the sum over its plans (Shards.send). An adaptive plan's share is the ceiling of its
        # closed loop, which sets the pacer's rate (rate.py).
        share = plan.rate / max(plan.share, 1)
        self.routes, self.route = routes, route(plan)
        learned = routes.get(self.route, clock.now()) if routes is not None else None
        self.control = RateControl(share, plan.share, learned) if plan.adaptive else None
        self.pacer = Pacer(share if self.control is None else self.control.rate)
        self.rtt = RttEstimator(plan)
        # Its batches may be built over arrays (Shards._bulk): only plain tcp_syn's frames (a
        # subclass patches more per probe) into a sender's buffer rows.
        probe = self.probe
        self.bulk = (probe, send) if type(probe) is TcpSyn and isinstance(send, Sender) else None
        self.backoffs, self.next_log = 0, 0.0  # the loop's back-offs since its last log line

    def steer(self, now: float, worker: int) -> Decision | None:
        """An adaptive plan's rate, after what its samples told since the last look; the
        decision taken, if an epoch ended."""
        assert self.control is not None
        decision = self.control.update(now, self.rtt.timeout(), self.rtt.srtt)
        if decision is None:
            return None
        self.pacer.set_rate(decision.rate)
        if self.routes is not None:
            self.routes.put(self.route, self.control.learned(now))
        if decision.reason != "loss":
            return decision
        # A line when the path made the loop back off, at most one per LOG_EVERY per plan (a
        # throttled path backs it off every second or so): climbing is no news, and a clean
        # one-shot scan's stderr stays empty.
        self.backoffs += 1
        if now >= self.next_log:
            log.info("engine.rate", worker=worker, plan=self.plan.gen, rate=round(decision.rate),
                     reason=decision.reason, ratio=round(decision.ratio, 3), loss=round(decision.loss, 3),
                     backoffs=self.backoffs)
            self.backoffs, self.next_log = 0, now + LOG_EVERY
        return decision


def route(plan: plans.Plan) -> tuple[int, int | bytes]:
    """Which path a plan's probes take, as far as a worker can tell cheaply: its interface and
    its one destination MAC (a gateway's: routed), or the /24 of its first host (on-link hosts,
    each its own MAC)."""
    macs = plan.macs
    if macs and all(mac == macs[0] for mac in macs):
        return plan.ifindex, macs[0]
    return plan.ifindex, plan.hosts[0] >> 8 if plan.hosts else 0


class ShardRun:
    """One shard in this worker's hands: which probes the current pass still has to send."""

    def __init__(self, state: PlanState, shard: int, shard_slot: int, states: memoryview) -> None:
        self.ps = state
        self.shard = shard
        self.shard_slot = shard_slot
        self.start, end = state.plan.shard_range(shard)
        self.length = end - self.start
        self.states = states
        self.attempt = 0
        self.order: Callable[[int], int] = Permutation(self.length, state.plan.key + shard.to_bytes(4, "big"))
        self.missing: list[int] = []  # a retry pass's order (retry())
        self._missing_array: npt.NDArray[np.int64] | None = None  # the same, as an array once asked for
        self.pos = 0
        self.total = self.length
        self.deadline = 0.0
        self.before: list[bytes] = []  # its states when each retry pass began (coverage.py)
        self.marked = 0  # the position its last R_MARK told
        self.silent_from = 0  # no probe before it is unanswered (an answer only ever fills a state)
        self.gated = False  # its retry passes wait for the control process's grant
        # Resumed (after a restart, or its worker's death: a first pass numbered past 0 or begun
        # past 0): its states started blank, so what an earlier life had answered reads as
        # retried and recovered here; its coverage counts only what it sent and heard.
        self.resumed = False

    def any_unanswered(self) -> bool:
        """Whether a probe got no answer: asked every GRANT_WAIT while a pass waits for its
        grant, so a copy of the states from the first silent one (memchr), not a list."""
        at = bytes(self.states[self.silent_from : self.length]).find(0)
        if at < 0:
            self.silent_from = self.length
            return False
        self.silent_from += at
        return True

    @property
    def keyed(self) -> bool:
        """Its pass goes in the shard's keyed order (a first pass, or a resumed one), not over a
        retry's list of what got no answer."""
        return isinstance(self.order, Permutation)

    def offsets(self, first: int, count: int) -> npt.NDArray[np.int64]:
        """[order(i) for i in range(first, first + count)], over arrays."""
        if isinstance(self.order, Permutation):
            return self.order.many(first, count)
        if self._missing_array is None:
            self._missing_array = np.array(self.missing, np.int64)
        return self._missing_array[first : first + count]

    def unanswered(self) -> list[int]:
        data = bytes(self.states[: self.length])
        out, at = [], data.find(0)
        while at >= 0:
            out.append(at)
            at = data.find(0, at + 1)
        return out

    def retry(self, missing: list[int]) -> None:
        """The next pass sends only what got no answer."""
        self.attempt += 1
        self.order, self.pos, self.total = missing.__getitem__, 0, len(missing)
        self.missing, self._missing_array = missing, None
        self.before.append(bytes(self.states[: self.length]))

    def coverage(self, states: bytes, per_host: bool) -> tuple[Counts, list[tuple[int, Counts]]]:
        """The shard's counts, and with `per_host` those of each host that answered (coverage.py)."""
        hosts = list(coverage.by_host(self.ps.plan, self.shard, states, self.before)) if per_host else []
        total = coverage.counted(states, self.before)
        if self.resumed:
            return total.without_retries(), [(host, counts.without_retries()) for host, counts in hosts]
        return total, hosts


class PacedRun:
    """One shard of a paced plan in this worker's hands: its schedule holds its retries too."""

    def __init__(self, state: PlanState, shard: int, shard_slot: int, states: memoryview, now: float) -> None:
        self.ps = state
        self.shard = shard
        self.shard_slot = shard_slot
        start, end = state.plan.shard_range(shard)
        self.length = end - start
        self.states = states
        self.schedule = Schedule(state.plan, shard, states, now)

    def coverage(self, states: bytes, per_host: bool) -> tuple[Counts, list[tuple[int, Counts]]]:
        """The shard's counts (its hosts' sum), and with `per_host` those of each host that answered."""
        schedule, total = self.schedule, Counts()
        hosts = []
        for k in range(len(schedule.hosts)):
            counts = schedule.counts(k)
            total = total.plus(counts)
            if per_host and counts.answered:
                hosts.append((schedule.first_host + k, counts))
        return total, hosts


class Shards:
    """One worker's shards in hand: sending (one run per plan with a pass to send, in turn),
    held (passes whose plan has another run sending), waiting (for late replies)."""

    def __init__(self, shared: Shared, index: int, emit: Callable[[bytes], None], sent: int) -> None:
        self.shared = shared
        self.index = index
        self.slots = shared.worker_slots(index)
        self.free = list(self.slots)  # free shard slots
        self.sending: deque[ShardRun] = deque()
        self.held: list[ShardRun] = []
        self.waiting: list[ShardRun] = []
        self.paced: list[PacedRun] = []  # every paced shard, from its start to its tally
        # A job may start now: one came (the worker sets it), a pass ended or a shard slot was freed.
        self.may_start = False
        self.emit = emit
        self.sent = sent  # probes sent, over this worker index's lives

    def clear(self) -> None:
        """At boot: a predecessor's shards are no one's any more."""
        for shard_slot in self.slots:
            self.shared.set_shard_header(shard_slot, _FREE)

    def busy_plans(self) -> set[int]:
        """Generations of the plans that have a pass to send."""
        return {run.ps.plan.gen for run in (*self.sending, *self.held)}

    def start(self, state: PlanState, shard: int, attempt: int = 0, pos: int = 0, gated: bool = False) -> None:
        """Start a shard; a resumed one's first pass is numbered `attempt` and sends its keyed
        order from `pos` (docs/architecture.md, Resume). A gated shard's retry passes wait for
        the control process to grant them (SHARD_GRANT)."""
        shard_slot = self.free.pop()
        start, end = state.plan.shard_range(shard)
        view = self.shared.shards[shard_slot]
        view[SHARD_STATES : SHARD_STATES + end - start] = bytes(end - start)
        self.shared.set_grant(shard_slot, state.plan.gen, shard, attempt)
        self.shared.set_shard_header(shard_slot, ShardHeader(state.plan.gen, shard, end - start, 1))
        if state.plan.paced:
            self.paced.append(PacedRun(state, shard, shard_slot, view[SHARD_STATES:], clock.now()))
            return
        run = ShardRun(state, shard, shard_slot, view[SHARD_STATES:])
        run.attempt, run.pos, run.marked = attempt, min(pos, run.total), min(pos, run.total)
        run.gated, run.resumed = gated, attempt > 0 or pos > 0
        self.sending.append(run)

    def _mark(self, run: ShardRun) -> None:
        """Tell the control process how far the run's pass is, every MARK_EVERY probes and at
        its end (its checkpoint, written to the store: scan/resume.py)."""
        over = run.pos >= run.total
        if not over and run.pos - run.marked < MARK_EVERY:
            return
        run.marked = run.pos
        flags = (MARK_BASE if run.keyed else 0) | (MARK_PASS_END if over else 0)
        self.emit(pack_result(R_MARK, flags=flags, plan_gen=run.ps.plan.gen, shard=run.shard, a=run.attempt,
                              b=run.pos))

    def _release(self, run: ShardRun | PacedRun) -> None:
        self.shared.set_shard_header(run.shard_slot, _FREE)
        self.free.append(run.shard_slot)
        self.may_start = True

    def _live(self, run: ShardRun | PacedRun) -> bool:
        return plans.generation(self.shared.plans[run.ps.plan.slot]) == run.ps.plan.gen

    def next_deadline(self, now: float) -> float:
        """Seconds until the first wait for late replies ends (IDLE_WAIT when none waits): the
        longest the loop may sleep. A paced shard's next due host is not here: send() returns
        how long until it, and the loop sleeps the shorter of the two."""
        return min((r.deadline - now for r in self.waiting), default=IDLE_WAIT)

    # -- passes ------------------------------------------------------------------------------
    def _queue_pass(self, run: ShardRun) -> None:
        """A pass to send: its turn comes once no other run of its plan is sending."""
        if any(other.ps is run.ps for other in self.sending):
            self.held.append(run)
        else:
            self.sending.append(run)

    def _pass_over(self, run: ShardRun) -> None:
        """`run` left the sending runs: its plan's held pass, if any, or its next shard, goes next."""
        self.may_start = True
        for held in self.held:
            if held.ps is run.ps:
                self.held.remove(held)
                self.sending.append(held)
                return

    def send(self, now: float, ceiling: Pacer) -> float:
        """Send one paced batch of the first sending run whose plan's pacer allows, in turn;
        returns 0, or how long until any run may send."""
        if ceiling.fill(now) < 1:
            return ceiling.wait()
        wait = self._send_paced(now, ceiling) if self.paced else IDLE_WAIT
        for _ in range(len(self.sending)):
            run = self.sending.popleft()
            if not self._live(run):
                self._release(run)
                self._pass_over(run)
                return 0.0
            ps = run.ps
            if ps.control is not None:
                ps.steer(now, self.index)
            pacer = ps.pacer
            if pacer.fill(now) < 1:
                wait = min(wait, pacer.wait())
                self.sending.append(run)
                continue
            first = run.pos
            sent = self._batch(run, min(int(pacer.tokens), int(ceiling.tokens)), now, ceiling)
            if ps.control is not None and sent:
                self._sample(run, now, first, sent)
            self._mark(run)
            if run.pos < run.total:
                self.sending.append(run)  # its turn is over: the next run's comes
            else:
                run.deadline = now + run.ps.rtt.timeout()
                self.waiting.append(run)
                self._pass_over(run)
            return 0.0
        return wait

    def _sample(self, run: ShardRun, now: float, first: int, sent: int) -> None:
        """Tell the plan's loop of a batch (rate.py): a few of its probes are watched for their
        replies when its pass is keyed, where every position was sent (a retry pass skips what
        got a late answer, and its ratio is no path's)."""
        assert run.ps.control is not None
        offs: list[int] = []
        if run.keyed:
            order, step = run.order, -(-(run.pos - first) // PER_BATCH)
            offs = [order(at) for at in range(first, run.pos, step)]
        run.ps.control.batch(now, sent, self.shared.shards[run.shard_slot], offs)

    def _batch(self, run: ShardRun, n: int, now: float, ceiling: Pacer) -> int:
        """Send up to n probes of run's pass and spend them from both pacers; how many went."""
        n = min(n, run.total - run.pos)
        tick = clock.tick(now)
        bulk = run.ps.bulk
        sent = self._bulk(run, n, tick, *bulk) if bulk is not None and n >= BULK_LEAST else self._each(run, n, tick)
        run.ps.send.flush()
        run.ps.pacer.tokens -= sent
        ceiling.tokens -= sent
        self.sent += sent
        return sent

    def _each(self, run: ShardRun, n: int, tick: int) -> int:
        """Queue the pass's next n positions one probe at a time; how many were sent (a retry
        pass skips what got an answer since it began)."""
        frame, send, start, order = run.ps.probe.frame, run.ps.send, run.start, run.order
        states, retry, nh = run.states, run.attempt > 0, len(run.ps.plan.hosts)
        sent = 0
        for _ in range(n):
            off = order(run.pos)
            if not (retry and states[off]):
                # Plan.pair of an unpaced (port-major) index, inline: the hot loop of every scan.
                index = start + off
                send(frame(index % nh, index // nh, tick))
                sent += 1
            run.pos += 1
        return sent

    def _bulk(self, run: ShardRun, n: int, tick: int, probe: TcpSyn, send: Sender) -> int:
        """_each over arrays: the same frames in the same order, written in the sender's rows. A
        retry pass reads its state bytes once for the batch, not as each probe goes: an answer
        that comes in meanwhile (another worker records it) is one the loop could as well miss."""
        offs = run.offsets(run.pos, n)
        if run.attempt > 0:
            offs = offs[np.frombuffer(run.states, np.uint8)[offs] == 0]
        run.pos += n
        ports, hosts = np.divmod(run.start + offs, len(run.ps.plan.hosts))  # Plan.pair, port-major
        for at in range(0, len(offs), Sender.ROWS_MAX):
            part = slice(at, at + Sender.ROWS_MAX)
            count = len(hosts[part])
            rows, lengths = send.rows(count)
            probe.frames(hosts[part], ports[part], tick, rows, lengths)
            send.add_rows(count)
        return len(offs)

    def _send_paced(self, now: float, ceiling: Pacer) -> float:
        """Send every paced host that is due, as far as the pacers allow; returns how long until
        the next is due (or the pacers allow one). The clock is read again: the worker's turn
        may have spent a while receiving since `now`, and a host's gap counts from its sends."""
        now = clock.now()
        wait = IDLE_WAIT
        tick = clock.tick(now)
        # Each turn another run goes first: under a tight ceiling the first ones would take every
        # token, and the later shards' hosts wait far past their gap (starve).
        self.paced.append(self.paced.pop(0))
        for run in self.paced:
            pacer, schedule, frame, send = run.ps.pacer, run.schedule, run.ps.probe.frame, run.ps.send
            sent = 0
            while pacer.fill(now) >= 1 and ceiling.tokens >= 1:
                hit = schedule.pop(now, run.ps.rtt.timeout())
                if hit is None:
                    break
                send(frame(*hit, tick))
                pacer.tokens -= 1
                ceiling.tokens -= 1
                sent += 1
            if sent:
                send.flush()
                self.sent += sent
            limit = pacer.wait() if pacer.tokens < 1 else ceiling.wait() if ceiling.tokens < 1 else 0.0
            wait = min(wait, max(schedule.next_due() - now, limit))
        return max(wait, 0.0)

    # -- ends of passes --------------------------------------------------------------------------
    def expire(self, now: float) -> None:
        """Runs whose wait for late replies is over: retried for what got none, else finished."""
        for paced in [r for r in self.paced if r.schedule.finished(now) or not self._live(r)]:
            self.paced.remove(paced)
            if self._live(paced):
                self._finish(paced)
            else:
                self._release(paced)
        for run in [r for r in self.waiting if r.deadline <= now]:
            self.waiting.remove(run)
            if not self._live(run):
                self._release(run)
                continue
            if run.attempt < run.ps.plan.retries and run.any_unanswered():
                if run.gated and self.shared.grant(run.shard_slot, run.ps.plan.gen, run.shard) <= run.attempt:
                    # Not yet recorded in the store: a restart now must not repeat this pass.
                    run.deadline = now + GRANT_WAIT
                    self.waiting.append(run)
                    continue
                run.retry(run.unanswered())  # built once, as the pass starts
                self._queue_pass(run)
            else:
                self._finish(run)

    def _finish(self, run: ShardRun | PacedRun) -> None:
        """The shard's tally, its hosts' coverage where the tally is per host (port states), and
        its own coverage on its R_DONE."""
        p, states = run.ps.plan, bytes(run.states[: run.length])
        for record in run.ps.ptype.tally(p, run.shard, states):
            self.emit(record)
        total, hosts = run.coverage(states, run.ps.ptype.port_states)
        for host, counts in hosts:
            self.emit(pack_result(R_COVER, plan_gen=p.gen, shard=run.shard, ip=p.hosts[host],
                                  opts=coverage.pack(counts)))
        self.emit(pack_result(R_DONE, state=p.retries, plan_gen=p.gen, shard=run.shard, opts=coverage.pack(total)))
        self._release(run)


class ShardFinder:
    """The state bytes of a shard in progress in any worker: the kernel's fanout may hand a
    reply to a worker other than the one sending its shard."""

    def __init__(self, shards: list[memoryview]) -> None:
        self.shards = shards
        self.cache: dict[tuple[int, int], memoryview] = {}

    def states(self, gen: int, shard: int) -> memoryview | None:
        """None once the shard is done (or for a shard no worker has)."""
        key = (gen, shard)
        view = self.cache.get(key)
        if view is not None and SHARD_KEY.unpack_from(view, 0) == key:
            return view[SHARD_STATES:]
        self.cache.pop(key, None)
        for view in self.shards:
            if SHARD_KEY.unpack_from(view, 0) == key and shard_header(view).active:
                if len(self.cache) >= len(self.shards):  # stale keys: no more are live
                    self.cache.clear()
                self.cache[key] = view
                return view[SHARD_STATES:]
        return None
