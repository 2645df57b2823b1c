"""The control side of the engine: plan slots, shard hand-out, and worker restarts.

Shards of a plan are handed out in a keyed random order, the plans in turn, one shard each. A
worker holds at most PLAN_SHARDS of one plan (one being sent, the previous one waiting for late
replies, the next one ready) and SHARD_SLOTS in all, room for a plan in every plan slot: a plan whose shards take
hours never keeps another's from the workers. A worker whose generation changes (the supervisor
replaced it) gets every shard it had not reported done issued again (a plan with a checkpoint
says where each goes on: scan/resume.py), so a scan never silently loses a shard; replies
recorded twice are deduplicated by the scan's result.

A plan fails, and its owner is told why, when the engine refuses it (the workers check every
plan against the policy) or when workers keep dying while they hold its shards: a plan that
crashes the engine must not be run for ever, nor be taken for a daemon that cannot boot.
Failures are told only from poll(), never from submit(), so an owner is never called back while
it is in the middle of submitting.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import islice

from netscand.engine import plan as plans
from netscand.engine.permutation import Permutation
from netscand.engine.shm import (
    JOB,
    JOB_GATED,
    JOB_SHARD,
    PLAN_SHARDS,
    PLAN_SLOTS,
    R_DONE,
    R_REFUSED,
    REFUSE_INTERFACE,
    REFUSE_PLAN,
    REFUSE_RATE,
    REFUSE_TARGET,
    SHARD_KEY,
    SHARD_MAX,
    SHARD_SLOTS,
    Result,
    Shared,
    shard_header,
)

MIN_SHARD = 1024
MAX_CRASHES = 3  # worker restarts while holding a plan's shards before the plan is failed
CRASHED = f"engine worker crashed {MAX_CRASHES} times while running this scan's probes"
REFUSALS = {
    REFUSE_TARGET: "target outside the policy",
    REFUSE_RATE: "rate above policy.max_rate",
    REFUSE_PLAN: "malformed plan",
    REFUSE_INTERFACE: "no raw socket on the interface",
}

Start = tuple[int, int]  # a shard's first pass: (attempt, position in its keyed order)
# Whether a plan's next shards may be handed out: their first pass is recorded (scan/resume.py).
Gate = Callable[[list[int]], bool]


@dataclass
class Submitted:
    plan: plans.Plan
    on_result: Callable[[Result], None]
    on_failure: Callable[[str], None]  # told why, once, when the plan fails; it is retired by then
    pending: deque[int]
    done: set[int] = field(default_factory=set)
    crashes: int = 0  # worker restarts while a worker held shards of it
    starts: dict[int, Start] = field(default_factory=dict)  # resumed shards; the others: (0, 0)
    gate: Gate | None = None  # None: handed out at once, passes ungated (no store to record them)
    restart: Callable[[int], Start | None] | None = None  # where a shard whose worker died goes on

    @property
    def finished(self) -> bool:
        return len(self.done) == self.plan.shards


def shard_size(probes: int, workers: int) -> int:
    """Big enough to amortize a shard's bookkeeping, small enough that every worker has work."""
    return max(MIN_SHARD, min(SHARD_MAX, -(-probes // workers)))


class Dispatcher:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.slots: list[Submitted | None] = [None] * PLAN_SLOTS
        self.by_gen: dict[int, Submitted] = {}
        self.generations = [shared.worker_row(w).generation for w in range(shared.workers)]
        self.assigned: list[dict[tuple[int, int], None]] = [{} for _ in range(shared.workers)]
        self._next_gen = int.from_bytes(os.urandom(3), "big") << 8
        # A control process that starts owns no plan: any left by one that died are dropped, so
        # workers abandon their shards (a plan's slot changing is how they learn it is dead)
        # instead of running a dead scan ahead of new work.
        for buf in shared.plans:
            plans.release(buf)

    @property
    def free_slot(self) -> int | None:
        return next((i for i, s in enumerate(self.slots) if s is None), None)

    def fds(self) -> list[int]:
        return [r.wake_fd for r in self.shared.results]

    def submit(self, make: Callable[[int, int], plans.Plan], on_result: Callable[[Result], None],
               on_failure: Callable[[str], None], done: frozenset[int] = frozenset(),
               starts: Mapping[int, Start] | None = None, gate: Gate | None = None,
               restart: Callable[[int], Start | None] | None = None) -> Submitted:
        """Write a plan built by make(slot, generation) into a free slot (check free_slot first).
        Its results go to on_result; if it fails, on_failure(reason) is called once, from poll().
        A resumed plan's `done` shards are not run again, and its `starts` say where each shard
        in progress goes on; with a `gate`, a shard is handed out once gate(next shards) allows,
        and its retry passes once grant() says so; `restart` says where a shard whose worker
        died goes on."""
        slot = self.free_slot
        if slot is None:
            raise RuntimeError("no free plan slot")
        self._next_gen = (self._next_gen + 1) & 0xFFFFFFFF or 1
        plan = make(slot, self._next_gen)
        plans.write(self.shared.plans[slot], plan)
        order = Permutation(plan.shards, plan.key + b"shards")
        pending = deque(s for s in map(order, range(plan.shards)) if s not in done)
        sub = Submitted(plan, on_result, on_failure, pending, set(done), starts=dict(starts or {}), gate=gate,
                        restart=restart)
        self.slots[slot] = sub
        self.by_gen[plan.gen] = sub
        if sub.finished:  # every shard was done before a restart
            self._retire(sub)
        self.pump()
        return sub

    def grant(self, gen: int, shard: int, attempt: int) -> None:
        """Let a shard in progress send its pass `attempt` (recorded in the store by now)."""
        for w in range(self.shared.workers):
            for shard_slot in self.shared.worker_slots(w):
                view = self.shared.shards[shard_slot]
                if SHARD_KEY.unpack_from(view, 0) == (gen, shard) and shard_header(view).active:
                    # The grant names its shard: should the slot pass to another one meanwhile,
                    # that shard's worker does not take it as its own.
                    granted = self.shared.grant(shard_slot, gen, shard)
                    self.shared.set_grant(shard_slot, gen, shard, max(attempt, granted))

    def cancel(self, sub: Submitted) -> None:
        self._retire(sub)

    def _fail(self, sub: Submitted, reason: str) -> None:
        self._retire(sub)
        sub.on_failure(reason)

    def _retire(self, sub: Submitted) -> None:
        if self.slots[sub.plan.slot] is not sub:
            return  # retired already: failed, and then cancelled by its owner
        plans.release(self.shared.plans[sub.plan.slot])
        self.slots[sub.plan.slot] = None
        self.by_gen.pop(sub.plan.gen, None)
        for assigned in self.assigned:
            for key in [k for k in assigned if k[0] == sub.plan.gen]:
                del assigned[key]

    def _restarted(self) -> None:
        """Give the shards of restarted workers back to their plans; fail a plan that has seen
        too many of its workers die."""
        for w in range(self.shared.workers):
            gen = self.shared.worker_row(w).generation
            if gen == self.generations[w]:
                continue
            before, self.generations[w] = self.generations[w], gen
            if before == 0:
                self._first_life(w)
                continue
            held = {plan_gen for plan_gen, _ in self.assigned[w]}
            for plan_gen, shard in self.assigned[w]:
                self._again(self.by_gen[plan_gen], shard)
            self.assigned[w].clear()
            for plan_gen in held:
                sub = self.by_gen.get(plan_gen)
                if sub is None:
                    continue
                sub.crashes += 1
                if sub.crashes >= MAX_CRASHES:
                    self._fail(sub, CRASHED)

    def _first_life(self, worker: int) -> None:
        """A worker that had not written its row when its jobs went (the daemon's start: the
        workers fork beside the control process, which resumes scans at once) dropped them all
        unread, since they name generation 0: its shards go out again as they were, no pass lost
        and no crash counted."""
        for plan_gen, shard in self.assigned[worker]:
            self.by_gen[plan_gen].pending.appendleft(shard)
        self.assigned[worker].clear()

    def _again(self, sub: Submitted, shard: int) -> None:
        """A shard whose worker died is issued again: from its start, or, for a plan whose
        passes the store records, as a restart of the daemon would resume it (in a new pass,
        if one is left; else it is done with what it had found)."""
        start = sub.restart(shard) if sub.restart else (0, 0)
        if start is None:
            sub.done.add(shard)
            if sub.finished:
                self._retire(sub)
            return
        sub.starts[shard] = start
        sub.pending.appendleft(shard)

    def pump(self) -> None:
        """Hand out pending shards, as many as the workers have room for, one per plan in turn."""
        subs = [s for s in self.slots if s is not None and s.pending]
        while subs:
            subs = [sub for sub in subs if self._hand_out(sub) and sub.pending]

    def _hand_out(self, sub: Submitted) -> bool:
        """Give a plan's next shard to the worker holding least of it (a plan's rate is split
        among the workers that share it), then least in all; False if none has room for it."""
        gen = sub.plan.gen
        room = [(held, len(assigned), w) for w, assigned in enumerate(self.assigned)
                if (held := sum(1 for g, _ in assigned if g == gen)) < PLAN_SHARDS
                and len(assigned) < SHARD_SLOTS]
        if not room:
            return False
        if sub.gate is not None and not sub.gate(list(islice(sub.pending, len(self.assigned) * PLAN_SHARDS))):
            return False
        w = min(room)[2]
        shard = sub.pending.popleft()
        attempt, pos = sub.starts.get(shard, (0, 0))
        flags = JOB_GATED if sub.gate is not None else 0
        job = JOB.pack(JOB_SHARD, sub.plan.slot, attempt, flags, self.generations[w], gen, shard, pos)
        if not self.shared.jobs[w].push(job):
            sub.pending.appendleft(shard)
            return False
        self.assigned[w][(gen, shard)] = None
        return True

    def poll(self) -> None:
        """Read every result ring, route records to their plan, give back the shards of
        restarted workers, then hand out freed work."""
        for w, ring in enumerate(self.shared.results):
            ring.clear_wake()
            while records := ring.pop_many(4096):
                for raw in records:
                    self._route(w, Result.unpack(raw))
        self._restarted()
        self.pump()

    def _route(self, worker: int, r: Result) -> None:
        sub = self.by_gen.get(r.plan_gen)
        if sub is None:
            return  # a late record of a cancelled plan
        if r.kind == R_REFUSED:
            self._fail(sub, _refusal(r))
            return
        if r.kind == R_DONE:
            self.assigned[worker].pop((r.plan_gen, r.shard), None)
            if r.shard in sub.done:
                return
            sub.done.add(r.shard)
        sub.on_result(r)
        if sub.finished:
            self._retire(sub)


def _refusal(r: Result) -> str:
    reason = REFUSALS.get(r.a, f"reason {r.a}")
    if r.a == REFUSE_INTERFACE and r.b:
        reason += f" ({os.strerror(r.b)})"
    return f"the engine refused the plan: {reason}"
