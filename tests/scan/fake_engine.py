"""A fake engine for unit tests of the dispatcher and the runner, without root or a lab.

The shared region is the real one (shared memory needs no privilege), and so are its rings: the
test plays the workers' side of them. It takes the jobs the dispatcher wrote into each worker's
ring, answers them with the records the test scripts (as a worker would have recorded them),
reports shards done, and restarts a worker by giving its row a new generation, which is all the
supervisor's replacing a worker shows the dispatcher.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from netscand.engine import plan as plans
from netscand.engine.probes import PROBES
from netscand.engine.shm import R_DONE, Job, Shared, WorkerRow, pack_result

# What a worker records for one shard of a plan, besides its R_DONE (pack_result records).
Answer = Callable[[plans.Plan, int], Iterable[bytes]]


def silent(plan: plans.Plan, shard: int) -> Iterable[bytes]:
    return ()


class Taken(NamedTuple):
    """A job a fake worker took from its ring."""

    worker: int
    job: Job


class FakeEngine:
    def __init__(self, workers: int = 2) -> None:
        self.shared = Shared(workers)
        self.generations = [1] * workers
        self._plans: dict[int, plans.Plan] = {}  # the plan last read from each slot
        for w in range(workers):
            self._row(w)

    def _row(self, worker: int) -> None:
        self.shared.set_worker_row(worker, WorkerRow(1000 + worker, self.generations[worker], 1, 0.0, 0, 0))

    def restart(self, worker: int) -> None:
        """The supervisor replaced the worker: whatever it held is lost."""
        self.generations[worker] += 1
        self._row(worker)
        self.shared.jobs[worker].pop_many(64)

    def take(self, worker: int | None = None) -> list[Taken]:
        """The jobs waiting in one worker's ring (or in every one), oldest first."""
        workers = range(self.shared.workers) if worker is None else (worker,)
        return [Taken(w, Job.unpack(raw)) for w in workers for raw in self.shared.jobs[w].pop_many(64)]

    def report(self, worker: int, *records: bytes) -> None:
        for record in records:
            assert self.shared.results[worker].push(record), "result ring full"

    def done(self, taken: Taken) -> None:
        self.report(taken.worker, pack_result(R_DONE, plan_gen=taken.job.gen, shard=taken.job.shard))

    def plan(self, job: Job) -> plans.Plan | None:
        """The plan a job names, read from its slot as a worker reads it (and checked the same
        way); None once the slot holds another plan, or none."""
        buf = self.shared.plans[job.plan_slot]
        if plans.generation(buf) != job.gen:
            return None
        known = self._plans.get(job.plan_slot)
        if known is None or known.gen != job.gen:
            read = plans.read(buf, job.plan_slot, PROBES)
            assert read is not None and read.gen == job.gen
            known = self._plans[job.plan_slot] = read
        return known

    def serve(self, answer: Answer = silent, finish: Callable[[plans.Plan], bool] = lambda plan: True) -> list[Taken]:
        """Run every job given so far: its records, then its shard done (unless `finish` says the
        plan's shards never end). A job of a plan that is gone (cancelled, failed) is dropped,
        as a worker drops it when its slot changes."""
        taken = self.take()
        for one in taken:
            plan = self.plan(one.job)
            if plan is None:
                continue
            self.report(one.worker, *answer(plan, one.job.shard))
            if finish(plan):
                self.done(one)
        return taken
