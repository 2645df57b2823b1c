"""The control side of the engine: plan slots, shard hand-out, and worker restarts.

Shards of a plan are handed out in a keyed random order, at most SHARD_SLOTS at a time per
worker. A worker whose generation changes (the supervisor replaced it) gets every shard it had
not reported done issued again, so a scan never silently loses a shard; replies recorded twice
are deduplicated by the scan's result.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from netscand.engine import plan as plans
from netscand.engine.permutation import Permutation
from netscand.engine.shm import (
    JOB, JOB_SHARD, PLAN_SLOTS, R_DONE, SHARD_MAX, SHARD_SLOTS, Result, Shared,
)

MIN_SHARD = 1024


@dataclass
class Submitted:
    plan: plans.Plan
    on_result: Callable[[Result], None]
    pending: deque[int]
    done: set[int] = field(default_factory=set)

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
        self.generations = [shared.worker_row(w)[1] for w in range(shared.workers)]
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

    def submit(self, make: Callable[[int, int], plans.Plan],
               on_result: Callable[[Result], None]) -> Submitted:
        """Write a plan built by make(slot, generation) into a free slot (check free_slot first)."""
        slot = self.free_slot
        if slot is None:
            raise RuntimeError("no free plan slot")
        self._next_gen = (self._next_gen + 1) & 0xFFFFFFFF or 1
        plan = make(slot, self._next_gen)
        plans.write(self.shared.plans[slot], plan)
        order = Permutation(plan.shards, plan.key + b"shards")
        sub = Submitted(plan, on_result, deque(order(i) for i in range(plan.shards)))
        self.slots[slot] = sub
        self.by_gen[plan.gen] = sub
        self.pump()
        return sub

    def cancel(self, sub: Submitted) -> None:
        self._retire(sub)

    def _retire(self, sub: Submitted) -> None:
        plans.release(self.shared.plans[sub.plan.slot])
        self.slots[sub.plan.slot] = None
        self.by_gen.pop(sub.plan.gen, None)
        for assigned in self.assigned:
            for key in [k for k in assigned if k[0] == sub.plan.gen]:
                del assigned[key]

    def pump(self) -> None:
        """Re-issue the shards of restarted workers, then hand out pending shards."""
        for w in range(self.shared.workers):
            gen = self.shared.worker_row(w)[1]
            if gen != self.generations[w]:
                self.generations[w] = gen
                for plan_gen, shard in self.assigned[w]:
                    self.by_gen[plan_gen].pending.appendleft(shard)
                self.assigned[w].clear()
        for sub in [s for s in self.slots if s is not None]:
            while sub.pending:
                w = min(range(self.shared.workers), key=lambda i: len(self.assigned[i]))
                if len(self.assigned[w]) >= SHARD_SLOTS:
                    return
                shard = sub.pending.popleft()
                job = JOB.pack(JOB_SHARD, sub.plan.slot, self.generations[w], sub.plan.gen, shard)
                if not self.shared.jobs[w].push(job):
                    sub.pending.appendleft(shard)
                    return
                self.assigned[w][(sub.plan.gen, shard)] = None

    def poll(self) -> None:
        """Read every result ring, route records to their plan, then hand out freed work."""
        for w, ring in enumerate(self.shared.results):
            ring.clear_wake()
            while records := ring.pop_many(4096):
                for raw in records:
                    self._route(w, Result.unpack(raw))
        self.pump()

    def _route(self, worker: int, r: Result) -> None:
        sub = self.by_gen.get(r.plan_gen)
        if sub is None:
            return  # a late record of a cancelled plan
        if r.kind == R_DONE:
            self.assigned[worker].pop((r.plan_gen, r.shard), None)
            if r.shard in sub.done:
                return
            sub.done.add(r.shard)
        sub.on_result(r)
        if sub.finished:
            self._retire(sub)
