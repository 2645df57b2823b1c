"""An engine worker: sends its shards' probes at its share of the rate and records every reply.

One synchronous loop, no threads and no asyncio: receive whatever is waiting, expire shards
whose reply timeout has passed (retrying what is unanswered, finalizing the rest), take new jobs
when there is room, send the next batch when the pacers allow, else sleep in select() (while
sending, at least a nap: _nap).

Every running plan is sent at once: each has at most one shard sending (its next one waits until
that pass is sent, while the previous one waits for late replies and retries), and the sending
runs take turns, one batch each, each paced by its own plan's rate and all of them together by
the worker's ceiling. So a scan at one probe a second never holds up another: a shard of 65536
probes takes it hours, and the other scans' shards go round beside it. A paced plan's shards
(paced.py) all send at once instead, each host at its own gap: the worker sleeps until the next
host is due.

A shard's probe states live in shared memory, so whichever worker the kernel's fanout hands a
reply to can record it; the shard's owner alone decides retries and reports the tallies.

The parts: pacing.py (token buckets), paced.py (a paced shard's per-host schedule), rtt.py
(each plan's timeout), shards.py (a shard's life from its start to its tally), replies.py
(what a received frame answers, and what that tells), intake.py (the plans: read from their
slots, admitted or refused under the policy, which it re-reads at a reload, and their
interfaces' sockets); here, the loop that composes them and the intake of jobs. Sockets come
from a Link (sockets.py), so a test can hand it socket pairs instead of raw sockets.

Nothing a worker receives can end it (replies.py); nor does it run every plan it is given: each
is checked against the policy (intake.py, guard.py), and a refused one is reported instead of sent.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections import deque
from collections.abc import Callable

from netscand.engine import clock
from netscand.engine.guard import PlanGuard
from netscand.engine.intake import Intake
from netscand.engine.pacing import Pacer
from netscand.engine.replies import Replies
from netscand.engine.shards import IDLE_WAIT, ShardFinder, Shards
from netscand.engine.shm import JOB_GATED, JOB_SHARD, PLAN_SLOTS, Job, Shared, WorkerRow
from netscand.engine.sockets import RAW_LINK, Link

RX_BATCH = 256
BEAT_EVERY = 0.1
NAP_MAX = 0.002  # of a turn's sleep while sending (_nap): replies wait at most this long too,
# as long as the receive ring's blocks wait to be retired (ring.RETIRE_MS)


class Worker:
    """One engine worker process's loop and the parts it composes (module docstring)."""

    def __init__(self, shared: Shared, index: int, guard: PlanGuard,
                 reload: Callable[[], PlanGuard], link: Link = RAW_LINK) -> None:
        """`reload` reads the policy again (the configuration may have changed since `guard`);
        `link` opens the sockets on an interface."""
        self.shared, self.index = shared, index
        self.jobs = shared.jobs[index]
        self.results = shared.results[index]
        row = shared.worker_row(index)
        self.generation = row.generation + 1
        # The ceiling over all its plans: the intake sets it from the policy.
        self.pacer = Pacer(0.0)
        self.intake = Intake(shared, index, guard, reload, link, self.pacer, self._emit)
        self.plans, self.rx = self.intake.plans, self.intake.rx  # the intake's, read by the loop
        self.shards = Shards(shared, index, self._emit, row.sent)
        self.replies = Replies(index, ShardFinder(shared.shards), self._emit,
                               list(shared.malformed(index)),
                               row.matched)
        self.backlog: deque[Job] = deque()  # jobs taken but not started
        self.stopping = False
        self.next_beat = 0.0

    # -- lifecycle -------------------------------------------------------------------------
    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, self._on_hup)
        self.shards.clear()
        # The policy as the file says now, not as it was when the daemon started: a worker
        # restarted after a reload that narrowed it must not enforce the old one.
        self.intake.reread_policy()
        # Ready before the first plan or job is read: a worker that then dies died of its work,
        # not at boot, so a plan that kills workers fails its scan instead of stopping the daemon.
        self._beat(clock.now())
        while not self.stopping:
            now = clock.now()
            wait = self.step(now)
            if wait > 0:
                self._sleep(min(max(wait, self._nap()), self.shards.next_deadline(now)))

    def step(self, now: float) -> float:
        """One turn of the loop but its sleep; how long until a probe may go (0: at once)."""
        if now >= self.next_beat:
            self._beat(now)
        self.intake.refresh()
        self._receive()
        self.shards.expire(now)
        self._take_jobs()
        if self.shards.sending or self.shards.paced:
            return self.shards.send(now, self.pacer)
        return IDLE_WAIT

    def _nap(self) -> float:
        """The shortest sleep between two turns while sending. The pacers say when the next
        probe may go, which at 50,000/s is every 20 us; a turn costs a few probes' worth of
        CPU whatever it sends (the plan slots looked at, the receivers, select()), so waking for
        each probe spent most of the CPU on turns, and a batch is cheaper per probe the bigger
        it is (its arrays' fixed cost: shards.BULK_LEAST). Half the time the ceiling's bucket
        takes to fill: no pacer's bucket fills in that time (a plan's, slower, holds longer), so
        no probe's turn is lost, only grouped."""
        ceiling = self.pacer
        return min(NAP_MAX, ceiling.burst / 2 / ceiling.rate) if ceiling.rate > 0 else NAP_MAX

    def _on_term(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _on_hup(self, signum: int, frame: object) -> None:
        self.intake.hangup = True

    def _beat(self, now: float, ready: int = 1) -> None:
        # The plans with a pass to send (sending or held): one read but not started, or only
        # waiting for late replies, sends nothing at its rate; a paced one's pacer is only a cap
        # (its hosts' gaps are its pace) and it has no such pass.
        busy = self.shards.busy_plans()
        states = [ps for ps in self.plans.values() if ps.plan.gen in busy]
        rate = sum(ps.pacer.rate for ps in states)
        loss = max((ps.control.loss for ps in states if ps.control is not None), default=0.0)
        self.shared.set_worker_row(self.index, WorkerRow(os.getpid(), self.generation, ready, now,
                                                         self.shards.sent, self.replies.matched, rate, loss))
        self.shared.set_malformed(self.index, self.replies.malformed)
        self.next_beat = now + BEAT_EVERY

    def _sleep(self, timeout: float) -> None:
        fds = [self.jobs.wake_fd, *(s.fileno() for s in self.rx.values())]
        select.select(fds, [], [], max(timeout, 0))
        self.jobs.clear_wake()

    def _emit(self, record: bytes) -> None:
        while not self.results.push(record):
            time.sleep(0.001)  # the control process is behind; losing a result is worse

    # -- jobs ----------------------------------------------------------------------------------
    def _take_jobs(self) -> None:
        for raw in self.jobs.pop_many(16):
            job = Job.unpack(raw)
            # A job queued for this worker's previous life is re-issued by the control process.
            # A plan slot out of range is no job of a sane control process: dropped, not fatal.
            mine = job.epoch == self.generation
            if job.kind == JOB_SHARD and mine and job.plan_slot < PLAN_SLOTS:
                self.backlog.append(job)
                self.shards.may_start = True
        if self.shards.may_start:
            self._start_jobs()

    def _start_jobs(self) -> None:
        """Start the backlog's jobs, in order, while shard slots are free; a plan that has a pass
        to send keeps its next shard back until that pass is sent (a paced plan's all start).
        Runs only when something it depends on changed (a job came, a pass ended, a shard slot
        was freed): not once a batch."""
        self.shards.may_start = False
        busy = self.shards.busy_plans()
        kept: deque[Job] = deque()
        while self.backlog and self.shards.free:
            job = self.backlog.popleft()
            if job.gen in busy:
                kept.append(job)
                continue
            # The plan may have been written after this loop's refresh, just before its job.
            state = self.intake.plan(job.plan_slot)
            if state is None or state.plan.gen != job.gen or job.shard >= state.plan.shards:
                # Cancelled before it started (the control process forgot it too), or no such shard.
                continue
            self.shards.start(state, job.shard, job.attempt, job.pos, bool(job.flags & JOB_GATED))
            # A paced shard sends to its end: its plan's next ones go beside it.
            if not state.plan.paced:
                busy.add(job.gen)
        kept.extend(self.backlog)
        self.backlog = kept

    # -- receiving -----------------------------------------------------------------------------
    def _receive(self) -> None:
        """What waits on the receivers, a block at a time (matched, recorded and timed:
        replies.py)."""
        take, states = self.replies.take_batch, list(self.plans.values())
        for rx in self.rx.values():
            for batch in rx.batches(RX_BATCH):
                take(batch, states)


def main(shared: Shared, index: int, guard: PlanGuard, reload: Callable[[], PlanGuard]) -> None:
    Worker(shared, index, guard, reload).run()
