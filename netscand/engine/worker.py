"""An engine worker: sends its shards' probes at its share of the rate and records every reply.

One synchronous loop, no threads and no asyncio: receive whatever is waiting, expire shards
whose reply timeout has passed (retrying what is unanswered, finalizing the rest), take new jobs
when there is room, send the next batch when the pacers allow, else sleep in select().

Every running plan is sent at once: each has at most one shard sending (its next one waits until
that pass is sent, while the previous one waits for late replies and retries), and the sending
runs take turns, one batch each, each paced by its own plan's rate and all of them together by
the worker's ceiling. So a scan at one probe a second never holds up another: a shard of 65536
probes takes it hours, and the other scans' shards go round beside it.

A shard's probe states live in shared memory, so whichever worker the kernel's fanout hands a
reply to can record it; the shard's owner alone decides retries and reports the tallies.

Nothing a worker receives can end it: every frame is checked before any probe reads it
(engine/frames.py), and whatever still goes wrong on one frame is counted and logged, and the
worker goes on. Nor does it run every plan it is given: each is checked against the policy
(engine/guard.py), and a refused one is reported instead of sent.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time
from collections import deque
from collections.abc import Callable

import structlog

from netscand.engine import frames, sockets
from netscand.engine import plan as plans
from netscand.engine.guard import PlanGuard, route_gateways
from netscand.engine.permutation import Permutation
from netscand.engine.probes import Answer, Probe, probe_for
from netscand.engine.probes.tcp_syn import TICK_MASK, ports_for
from netscand.engine.shm import (
    JOB, JOB_SHARD, PLAN_SLOTS, R_DONE, R_HOST, R_PORT, R_REFUSED, R_TALLY, REFUSE_INTERFACE,
    REFUSE_PLAN, REFUSE_TARGET, S_CLOSED, S_NONE, S_OPEN, S_UNREACH, S_UP, SHARD_HEADER, Shared,
    pack_result,
)

log = structlog.get_logger()

BATCH = 64  # probes sent between two looks at the receive sockets
RX_BATCH = 256
LIST_CAP = 25  # per host and shard, closed or filtered ports are listed one by one up to this
TICKS_PER_S = 250  # the send tick is 4 ms: 10 bits of source port cover 4 s of RTT
IDLE_WAIT = 0.05
BEAT_EVERY = 0.1
LOG_EVERY = 10.0  # at most one line per worker this often about frames that broke a parser


class Pacer:
    """A token bucket: `rate` probes a second, with at most a batch (or 20 ms of sending, if
    less) saved up, so a pause is never made up for by a burst. It starts full: a new plan's
    first probes go at once, however slow its rate."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate: float) -> None:
        self.tokens = 0.0
        self.at = 0.0  # the monotonic clock's origin: the first fill fills it
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(1.0, min(float(BATCH), rate / 50))

    def fill(self, now: float) -> float:
        """The probes that may go now."""
        self.tokens = min(self.tokens + (now - self.at) * self.rate, self.burst)
        self.at = now
        return self.tokens

    def wait(self) -> float:
        """How long until the next probe may go (after fill)."""
        return (1 - self.tokens) / self.rate


class PlanState:
    """A worker's copy of one plan: its probe, sockets, pacer and measured round-trip time."""

    def __init__(self, plan: plans.Plan, send: sockets.Sender | sockets.RawIp) -> None:
        self.plan = plan
        self.probe: Probe = probe_for(plan)
        self.send = send
        self.nh = len(plan.hosts)
        # The plan's rate is split among the workers that share it; the worker's ceiling caps
        # the sum over its plans (Worker.pacer).
        self.pacer = Pacer(plan.rate / max(plan.share, 1))
        self.srtt: float | None = None
        self.rttvar = 0.0

    def rtt_sample(self, rtt: float) -> None:
        # Jacobson/Karels, as TCP and nmap do.
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar += (abs(rtt - self.srtt) - self.rttvar) / 4
            self.srtt += (rtt - self.srtt) / 8

    def timeout(self) -> float:
        p = self.plan
        if self.srtt is None:
            return p.timeout_init_ms / 1000
        return min(max(self.srtt + 4 * self.rttvar, p.timeout_min_ms / 1000), p.timeout_max_ms / 1000)


class ShardRun:
    """One shard in this worker's hands: which probes the current pass still has to send."""

    def __init__(self, state: PlanState, shard: int, slot: int, states: memoryview) -> None:
        self.ps = state
        self.shard = shard
        self.slot = slot
        self.start, end = state.plan.shard_range(shard)
        self.length = end - self.start
        self.states = states
        self.attempt = 0
        self.order: Callable[[int], int] = Permutation(self.length, state.plan.key + shard.to_bytes(4, "big"))
        self.pos = 0
        self.total = self.length
        self.deadline = 0.0

    def unanswered(self) -> list[int]:
        data = bytes(self.states[: self.length])
        out, at = [], data.find(0)
        while at >= 0:
            out.append(at)
            at = data.find(0, at + 1)
        return out


class Worker:
    def __init__(self, shared: Shared, index: int, guard: PlanGuard,
                 reload: Callable[[], PlanGuard]) -> None:
        """`reload` reads the policy again (the configuration may have changed since `guard`)."""
        self.shared = shared
        self.index = index
        self.jobs = shared.jobs[index]
        self.results = shared.results[index]
        _, gen, _, _, self.sent, self.matched = shared.worker_row(index)
        self.malformed = list(shared.malformed(index))
        self.generation = gen + 1
        self.guard, self.reload = guard, reload
        self.ceiling = self._ceiling()
        self.plans: dict[int, PlanState] = {}
        self.refused: dict[int, int] = {}  # slot -> generation of the plan refused there
        self.tx: dict[int, sockets.Sender | sockets.RawIp] = {}
        self.rx: dict[int, socket.socket] = {}
        self.sending: deque[ShardRun] = deque()  # one run per plan with a pass to send, in turn
        self.held: list[ShardRun] = []  # passes to send whose plan has another run sending
        self.waiting: list[ShardRun] = []  # runs waiting for replies before retry or finalize
        self.backlog: deque[tuple[int, int, int]] = deque()  # jobs taken but not started
        self.intake = False  # the backlog may hold a job that can start now
        self.free_slots = list(shared.worker_slots(index))
        self.slot_cache: dict[tuple[int, int], memoryview] = {}
        self.pacer = Pacer(self.ceiling)
        self.stopping = False
        self.hangup = False  # a reload: read the policy again
        self.rxbuf = bytearray(sockets.SNAPLEN)
        self.next_beat = 0.0
        self.next_log = 0.0
        self.unlogged = 0  # parser errors since the last line about them

    # -- lifecycle -------------------------------------------------------------------------
    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, self._on_hup)
        for i in self.shared.worker_slots(self.index):
            SHARD_HEADER.pack_into(self.shared.shards[i], 0, 0, 0, 0, 0)
        # The policy as the file says now, not as it was when the daemon started: a worker
        # restarted after a reload that narrowed it must not enforce the old one.
        self._reread_policy()
        # Ready before the first plan or job is read: a worker that then dies died of its work,
        # not at boot, so a plan that kills workers fails its scan instead of stopping the daemon.
        self._beat(time.monotonic())
        while not self.stopping:
            now = time.monotonic()
            wait = self.step(now)
            if wait > 0:
                self._sleep(min(wait, self._next_deadline(now)))

    def step(self, now: float) -> float:
        """One turn of the loop but its sleep; returns how long until a probe may go (0: at once)."""
        if now >= self.next_beat:
            self._beat(now)
        self._refresh_plans()
        self._receive()
        self._expire(now)
        self._take_jobs()
        return self._send(now) if self.sending else IDLE_WAIT

    def _on_term(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _on_hup(self, signum: int, frame: object) -> None:
        self.hangup = True

    def _beat(self, now: float, ready: int = 1) -> None:
        self.shared.set_worker_row(self.index, os.getpid(), self.generation, ready, now,
                                   self.sent, self.matched)
        self.shared.set_malformed(self.index, self.malformed)
        self.next_beat = now + BEAT_EVERY

    def _sleep(self, timeout: float) -> None:
        fds = [self.jobs.wake_fd, *(s.fileno() for s in self.rx.values())]
        select.select(fds, [], [], max(timeout, 0))
        self.jobs.clear_wake()

    def _next_deadline(self, now: float) -> float:
        return min((r.deadline - now for r in self.waiting), default=IDLE_WAIT)

    def _emit(self, record: bytes) -> None:
        while not self.results.push(record):
            time.sleep(0.001)  # the control process is behind; losing a result is worse

    # -- plans and jobs ----------------------------------------------------------------------
    def _refresh_plans(self) -> None:
        if self.hangup:
            self._reread_policy()
        for slot in range(PLAN_SLOTS):
            self._plan(slot)

    def _plan(self, slot: int) -> PlanState | None:
        """This worker's copy of the plan in a slot, re-read when the control process replaced it."""
        buf = self.shared.plans[slot]
        gen = plans.generation(buf)
        known = self.plans.get(slot)
        if known is not None and known.plan.gen == gen:
            return known
        self.plans.pop(slot, None)
        if not gen or self.refused.get(slot) == gen:
            return None
        try:
            plan = plans.read(buf, slot)
        except plans.PlanError as exc:
            self._refuse(slot, gen, REFUSE_PLAN, detail=str(exc))
            return None
        if plan is None:
            return None
        reason = self._refusal(plan)
        if reason:
            self._refuse(slot, gen, reason)
            return None
        try:
            send = self._sockets(plan)
        except OSError as exc:  # the interface went away, or no CAP_NET_RAW
            self._refuse(slot, gen, REFUSE_INTERFACE, exc.errno or 0, str(exc))
            return None
        state = self.plans[slot] = PlanState(plan, send)
        return state

    def _refusal(self, plan: plans.Plan) -> int:
        """Why the policy forbids this plan (a REFUSE_* code), or 0. The policy is read again
        before a refusal: the configuration may have been reloaded, and widened, since."""
        reason = self.guard.refusal(plan)
        if not reason:
            return 0
        self._reread_policy()
        reason = self.guard.refusal(plan)
        if reason == REFUSE_TARGET and plan.kind == plans.KIND_ARP:
            reason = self.guard.refusal(plan, route_gateways())
        return reason

    def _reread_policy(self) -> None:
        """The policy as the configuration file says now: at start and on a reload (which may
        narrow it: plans read from then on are held to it; a plan already running goes on, as a
        reload leaves running scans alone), and before a refusal (a reload may have widened it
        before this worker heard of it)."""
        self.hangup = False
        try:
            self.guard = self.reload()
        except Exception as exc:  # a file being edited: keep what we have
            log.warning("engine.policy_unreadable", worker=self.index, error=str(exc))
        self.ceiling = self._ceiling()
        self.pacer.set_rate(self.ceiling)

    def _ceiling(self) -> float:
        # The rate ceiling over every scan at once: whatever the plans of however many
        # concurrent scans ask, each worker's pacer lets out at most max_rate / workers in all,
        # so all of them together stay within policy.max_rate.
        return self.guard.max_rate / self.shared.workers

    def _refuse(self, slot: int, gen: int, reason: int, errno: int = 0, detail: str = "") -> None:
        self.refused[slot] = gen
        log.warning("engine.plan_refused", worker=self.index, slot=slot, plan=gen, reason=reason,
                    detail=detail or None)
        self._emit(pack_result(R_REFUSED, plan_gen=gen, a=reason, b=errno))
        return None

    def _sockets(self, plan: plans.Plan) -> sockets.Sender | sockets.RawIp:
        if plan.ifindex not in self.tx:
            lo, hi = ports_for(plan)
            group = (self.shared.fanout_base + plan.ifindex) & 0xFFFF
            self.rx[plan.ifindex] = sockets.open_rx(plan.ifindex, group, lo, hi)
            self.tx[plan.ifindex] = sockets.open_tx(plan.ifindex, bool(plan.flags & plans.FLAG_LOOPBACK))
        return self.tx[plan.ifindex]

    def _take_jobs(self) -> None:
        for raw in self.jobs.pop_many(16):
            kind, slot, epoch, gen, shard = JOB.unpack(raw)
            # A job queued for this worker's previous life is re-issued by the control process.
            # A slot out of range is no job of a sane control process: dropped, not fatal.
            if kind == JOB_SHARD and epoch == self.generation and slot < PLAN_SLOTS:
                self.backlog.append((slot, gen, shard))
                self.intake = True
        if self.intake:
            self._start_jobs()

    def _start_jobs(self) -> None:
        """Start the backlog's jobs, in order, while slots are free; a plan that has a pass to
        send keeps its next shard back until that pass is sent. Runs only when something it
        depends on changed (a job came, a pass ended, a slot was freed): not once a batch."""
        self.intake = False
        busy = {run.ps.plan.gen for run in (*self.sending, *self.held)}
        kept: deque[tuple[int, int, int]] = deque()
        while self.backlog and self.free_slots:
            slot, gen, shard = job = self.backlog.popleft()
            if gen in busy:
                kept.append(job)
                continue
            # The plan may have been written after this loop's refresh, just before its job.
            state = self._plan(slot)
            if state is None or state.plan.gen != gen or shard >= state.plan.shards:
                continue  # cancelled before it started (the control process forgot it too), or no shard of it
            self._start(state, shard)
            busy.add(gen)
        kept.extend(self.backlog)
        self.backlog = kept

    def _start(self, state: PlanState, shard: int) -> None:
        slot = self.free_slots.pop()
        view = self.shared.shards[slot]
        start, end = state.plan.shard_range(shard)
        view[64 : 64 + end - start] = bytes(end - start)
        SHARD_HEADER.pack_into(view, 0, state.plan.gen, shard, end - start, 1)
        self.sending.append(ShardRun(state, shard, slot, view[64:]))

    def _release(self, run: ShardRun) -> None:
        SHARD_HEADER.pack_into(self.shared.shards[run.slot], 0, 0, 0, 0, 0)
        self.free_slots.append(run.slot)
        self.intake = True

    def _queue_pass(self, run: ShardRun) -> None:
        """A pass to send: its turn comes once no other run of its plan is sending."""
        if any(other.ps is run.ps for other in self.sending):
            self.held.append(run)
        else:
            self.sending.append(run)

    def _pass_over(self, run: ShardRun) -> None:
        """`run` left the sending runs: its plan's held pass, if any, or its next shard, goes next."""
        self.intake = True
        for held in self.held:
            if held.ps is run.ps:
                self.held.remove(held)
                self.sending.append(held)
                return

    def _live(self, run: ShardRun) -> bool:
        return plans.generation(self.shared.plans[run.ps.plan.slot]) == run.ps.plan.gen

    # -- sending -------------------------------------------------------------------------------
    def _send(self, now: float) -> float:
        """Send one paced batch of the first sending run whose plan's pacer allows, in turn;
        returns 0, or how long until any run may send."""
        if self.pacer.fill(now) < 1:
            return self.pacer.wait()
        wait = IDLE_WAIT
        for _ in range(len(self.sending)):
            run = self.sending.popleft()
            if not self._live(run):
                self._release(run)
                self._pass_over(run)
                return 0.0
            pacer = run.ps.pacer
            if pacer.fill(now) < 1:
                wait = min(wait, pacer.wait())
                self.sending.append(run)
                continue
            self._batch(run, min(int(pacer.tokens), int(self.pacer.tokens)), now)
            if run.pos < run.total:
                self.sending.append(run)  # its turn is over: the next run's comes
            else:
                run.deadline = now + run.ps.timeout()
                self.waiting.append(run)
                self._pass_over(run)
            return 0.0
        return wait

    def _batch(self, run: ShardRun, n: int, now: float) -> None:
        """Send up to n probes of run's pass and spend them from both pacers."""
        n = min(n, run.total - run.pos)
        tick = int(now * TICKS_PER_S)
        frame, send, nh, start, order = run.ps.probe.frame, run.ps.send, run.ps.nh, run.start, run.order
        states, retry = run.states, run.attempt > 0
        sent = 0
        for _ in range(n):
            off = order(run.pos)
            if not (retry and states[off]):
                index = start + off
                send(frame(index % nh, index // nh, tick))
                sent += 1
            run.pos += 1
        send.flush()
        run.ps.pacer.tokens -= sent
        self.pacer.tokens -= sent
        self.sent += sent

    def _expire(self, now: float) -> None:
        for run in [r for r in self.waiting if r.deadline <= now]:
            self.waiting.remove(run)
            if not self._live(run):
                self._release(run)
                continue
            missing = run.unanswered()
            if missing and run.attempt < run.ps.plan.retries:
                run.attempt += 1
                run.order, run.pos, run.total = missing.__getitem__, 0, len(missing)
                self._queue_pass(run)
            else:
                self._finish(run)

    def _finish(self, run: ShardRun) -> None:
        p = run.ps.plan
        if p.kind == plans.KIND_TCP_SYN:
            self._tally(run)
        self._emit(pack_result(R_DONE, plan_gen=p.gen, shard=run.shard))
        self._release(run)

    def _tally(self, run: ShardRun) -> None:
        """Per host that answered in this shard: closed and filtered counts, and the ports
        themselves where there are few (hosts are strided by nh in the port-major layout)."""
        p, nh, start = run.ps.plan, run.ps.nh, run.start
        data = bytes(run.states[: run.length])
        for o in range(min(run.length, nh)):
            seg = data[o::nh]
            closed, opened = seg.count(S_CLOSED), seg.count(S_OPEN)
            if closed + opened == 0:
                continue
            filtered = len(seg) - closed - opened
            ip = p.hosts[(start + o) % nh]
            self._emit(pack_result(R_TALLY, plan_gen=p.gen, shard=run.shard, ip=ip, a=closed,
                                   b=filtered))
            for state, count in ((S_CLOSED, closed), (S_NONE, filtered)):
                if not 0 < count <= LIST_CAP:
                    continue
                for j, value in enumerate(seg):
                    if value == state or (state == S_NONE and value == S_UNREACH):
                        port = p.ports[(start + o + j * nh) // nh]
                        self._emit(pack_result(R_PORT, state=value, plan_gen=p.gen, ip=ip, port=port))

    # -- receiving -----------------------------------------------------------------------------
    def _receive(self) -> None:
        buf, take = self.rxbuf, self._take
        for sock in self.rx.values():
            for _ in range(RX_BATCH):
                try:
                    n = sock.recv_into(buf)
                except OSError:  # nothing waiting (EAGAIN), or the interface went down
                    break
                take(bytes(buf[:n]))

    def _take(self, frame: bytes) -> None:
        # The last line of defence: frames.check() leaves no frame a probe should trip on, but
        # if one still does, the worker must not die of it.
        try:
            hit = frames.take(frame, self.plans.values(), self.malformed)
            if hit is not None:
                self._record(*hit)
        except Exception as exc:
            self._parser_error(exc, frame)

    def _parser_error(self, exc: Exception, frame: bytes) -> None:
        self.malformed[frames.PARSER_ERROR] += 1
        self.unlogged += 1
        now = time.monotonic()
        if now >= self.next_log:
            log.error("engine.frame_broke_parser", worker=self.index, error=repr(exc),
                      frame=frame[:96].hex(), since_last_line=self.unlogged)
            self.next_log, self.unlogged = now + LOG_EVERY, 0

    def _record(self, state: PlanState, a: Answer) -> None:
        p = state.plan
        self.matched += 1
        if a.tick >= 0:
            ticks = (int(time.monotonic() * TICKS_PER_S) - a.tick) & TICK_MASK
            state.rtt_sample(ticks / TICKS_PER_S)
        shard, off = divmod(a.port * state.nh + a.host, p.shard_size)
        states = self._states(p.gen, shard)
        prev = S_NONE if states is None else states[off]
        if states is not None and (prev == S_NONE or (prev == S_UNREACH and a.state != S_UNREACH)):
            states[off] = a.state
        if prev != S_NONE:
            return
        ip = p.hosts[a.host]
        if a.state == S_OPEN:
            self._emit(pack_result(R_PORT, state=S_OPEN, ttl=a.ttl, flags=a.flags, plan_gen=p.gen,
                                   ip=ip, port=p.ports[a.port], win=a.win, ipid=a.ipid, opts=a.opts))
        elif a.state == S_UP:
            self._emit(pack_result(R_HOST, plan_gen=p.gen, ip=ip, mac=a.mac))

    def _states(self, gen: int, shard: int) -> memoryview | None:
        """The shared state bytes of a shard in progress in any worker, or None once it is done."""
        key = (gen, shard)
        view = self.slot_cache.get(key)
        if view is not None and SHARD_HEADER.unpack_from(view, 0)[:2] == key:
            return view[64:]
        self.slot_cache.pop(key, None)
        for view in self.shared.shards:
            g, s, _, active = SHARD_HEADER.unpack_from(view, 0)
            if active and (g, s) == key:
                if len(self.slot_cache) >= len(self.shared.shards):  # stale keys: no more are live
                    self.slot_cache.clear()
                self.slot_cache[key] = view
                return view[64:]
        return None


def main(shared: Shared, index: int, guard: PlanGuard, reload: Callable[[], PlanGuard]) -> None:
    Worker(shared, index, guard, reload).run()

