"""The dispatcher over a fake engine (fake_engine.py): shard hand-out, results, worker restarts
and plan failures, with no worker process, no root and no lab."""

from __future__ import annotations

import errno
import os
from collections import Counter
from collections.abc import Callable

import pytest

from netscand.engine import plan as plans
from netscand.engine.shm import (
    JOB, PLAN_SHARDS, PLAN_SLOTS, R_DONE, R_PORT, R_REFUSED, REFUSE_INTERFACE, REFUSE_TARGET, SHARD_MAX, SHARD_SLOTS,
    S_OPEN, Result, WorkerRow, pack_result,
)
from netscand.scan.dispatch import CRASHED, MAX_CRASHES, MIN_SHARD, Dispatcher, Submitted, shard_size
from tests.scan.fake_engine import FakeEngine, Taken

SHARD = 1024
PORTS = tuple(range(1, SHARD + 1))  # one host's probes make one shard
KIND = 1  # the dispatcher never reads a plan's kind


def make(shards: int) -> Callable[[int, int], plans.Plan]:
    """Build-function for Dispatcher.submit: a plan of `shards` shards."""
    def build(slot: int, gen: int) -> plans.Plan:
        hosts = tuple(range(0xC6120000, 0xC6120000 + shards))
        return plans.Plan(gen=gen, kind=KIND, slot=slot, share=1, retries=1, key=os.urandom(16), ifindex=1,
                          src_ip=0x7F000001, src_mac=b"\0" * 6, sport_base=61440, rate=1000.0,
                          timeout_init_ms=1000, timeout_min_ms=100, timeout_max_ms=3000, shard_size=SHARD,
                          hosts=hosts, macs=(b"\0" * 6,) * shards, ports=PORTS)
    return build


class Owner:
    """A plan's owner: what the dispatcher told it."""

    def __init__(self) -> None:
        self.results: list[Result] = []
        self.failures: list[str] = []

    def submit(self, dispatcher: Dispatcher, shards: int) -> Submitted:
        return dispatcher.submit(make(shards), self.results.append, self.failures.append)


def held(jobs: list[Taken]) -> Counter[tuple[int, int]]:
    """Shards held, by (worker, plan generation)."""
    return Counter((j.worker, j.job.gen) for j in jobs)


def run_out(engine: FakeEngine, dispatcher: Dispatcher, sub: Submitted) -> list[int]:
    """Serve the plan until it is finished; the shards in the order they went out."""
    order: list[int] = []
    while not sub.finished:
        taken = engine.serve()
        assert taken, "the plan stalled"
        order += [j.job.shard for j in taken]
        dispatcher.poll()
    return order


def test_a_plan_is_written_to_a_free_slot_and_its_shards_go_out_once_each_in_a_keyed_order(
        engine: FakeEngine, dispatcher: Dispatcher) -> None:
    sub = Owner().submit(dispatcher, 64)
    assert plans.generation(engine.shared.plans[sub.plan.slot]) == sub.plan.gen != 0
    order = run_out(engine, dispatcher, sub)
    assert sorted(order) == list(range(64)) and order != sorted(order)
    other = Owner().submit(dispatcher, 64)
    assert run_out(engine, dispatcher, other) != order  # another plan, another key


def test_a_worker_holds_at_most_plan_shards_of_a_plan_and_shard_slots_in_all(
        engine: FakeEngine, dispatcher: Dispatcher) -> None:
    subs = [Owner().submit(dispatcher, 100) for _ in range(PLAN_SLOTS)]
    jobs = engine.take()
    assert held(jobs) == {(w, s.plan.gen): PLAN_SHARDS for w in (0, 1) for s in subs}
    assert Counter(j.worker for j in jobs) == {0: SHARD_SLOTS, 1: SHARD_SLOTS}
    assert dispatcher.free_slot is None
    with pytest.raises(RuntimeError):
        Owner().submit(dispatcher, 1)


def test_a_long_plan_never_keeps_a_later_one_from_the_workers(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    long = Owner().submit(dispatcher, 1000)
    engine.take()
    short = Owner().submit(dispatcher, 4)
    jobs = engine.take()
    assert held(jobs) == {(0, short.plan.gen): 2, (1, short.plan.gen): 2}  # at once, beside the long one
    for job in jobs:
        engine.done(job)
    dispatcher.poll()
    assert short.finished and dispatcher.slots[short.plan.slot] is None
    assert not long.finished and len(long.pending) == 1000 - 2 * PLAN_SHARDS


def test_freed_room_is_handed_out_one_shard_per_plan_in_turn(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    a, b = Owner().submit(dispatcher, 50), Owner().submit(dispatcher, 50)
    first = engine.take()
    for job in first:
        engine.done(job)
    dispatcher.poll()
    refill = engine.take()
    assert held(refill) == held(first)  # every worker gets back its two shards of each plan
    for w in (0, 1):
        gens = [j.job.gen for j in refill if j.worker == w]
        assert sorted(gens) == sorted([a.plan.gen, b.plan.gen] * PLAN_SHARDS)
    assert len(a.done) == len(b.done) == 2 * PLAN_SHARDS


def test_a_shard_goes_to_the_worker_holding_least_of_its_plan(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    sub = Owner().submit(dispatcher, 10)
    jobs = engine.take()
    [done] = [j for j in jobs if j.worker == 1][:1]
    engine.done(done)
    dispatcher.poll()
    [refill] = engine.take()
    assert refill.worker == 1 and refill.job.gen == sub.plan.gen


def test_records_go_to_their_plan_and_a_shard_done_twice_counts_once(
        engine: FakeEngine, dispatcher: Dispatcher) -> None:
    a, b = Owner(), Owner()
    sa, sb = a.submit(dispatcher, 2), b.submit(dispatcher, 2)
    jobs = engine.take()
    for t in jobs:
        engine.report(t.worker, pack_result(R_PORT, state=S_OPEN, plan_gen=t.job.gen, shard=t.job.shard,
                                            ip=0xC6120000, port=80 + t.job.shard))
        engine.done(t)
        engine.done(t)  # a worker restarted after reporting it, and the shard ran again
    dispatcher.poll()
    assert sorted(r.port for r in a.results if r.kind == R_PORT) == [80, 81]
    assert sorted(r.port for r in b.results if r.kind == R_PORT) == [80, 81]
    assert [r.kind for r in a.results].count(R_DONE) == 2  # not 4
    assert sa.finished and sb.finished and dispatcher.free_slot == 0
    assert plans.generation(engine.shared.plans[sa.plan.slot]) == 0  # released: workers drop its shards


def test_late_records_of_a_cancelled_plan_are_dropped(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    owner = Owner()
    sub = owner.submit(dispatcher, 8)
    jobs = engine.take()
    dispatcher.cancel(sub)
    assert dispatcher.slots[sub.plan.slot] is None and sub.plan.gen not in dispatcher.by_gen
    for t in jobs:
        engine.report(t.worker, pack_result(R_PORT, state=S_OPEN, plan_gen=t.job.gen, shard=t.job.shard, port=22))
        engine.done(t)
    dispatcher.poll()
    assert owner.results == [] and owner.failures == [] and engine.take() == []
    dispatcher.cancel(sub)  # twice is harmless


def test_a_restarted_workers_shards_are_given_again_to_its_new_generation(
        engine: FakeEngine, dispatcher: Dispatcher) -> None:
    owner = Owner()
    sub = owner.submit(dispatcher, 2)
    jobs = engine.take()
    assert {j.worker for j in jobs} == {0, 1}
    [lost] = [j for j in jobs if j.worker == 0]
    engine.restart(0)
    dispatcher.poll()
    again = engine.take()
    assert [(j.job.shard, j.job.epoch) for j in again] == [(lost.job.shard, 2)]
    assert sub.crashes == 1 and owner.failures == []
    for job in [*again, *(j for j in jobs if j.worker == 1)]:
        engine.done(job)
    dispatcher.poll()
    assert sub.finished and len([r for r in owner.results if r.kind == R_DONE]) == 2


def test_jobs_given_before_a_worker_first_wrote_its_row_go_out_again_as_they_were(engine: FakeEngine) -> None:
    # The daemon's start: the control process resumes scans while the workers still fork.
    engine.shared.set_worker_row(0, WorkerRow(0, 0, 0, 0.0, 0, 0))
    dispatcher = Dispatcher(engine.shared)
    restarts: list[int] = []
    sub = dispatcher.submit(make(2), lambda r: None, lambda why: None, starts={0: (1, 4096), 1: (1, 4096)},
                            restart=lambda shard: restarts.append(shard) or (2, 0))
    jobs = engine.take()
    [unread] = [j for j in jobs if j.worker == 0]
    assert unread.job.epoch == 0  # the worker, of generation 1, drops it unread
    engine.shared.set_worker_row(0, WorkerRow(1000, 1, 1, 0.0, 0, 0))
    dispatcher.poll()
    again = engine.take()
    assert [(j.job.shard, j.job.epoch, j.job.attempt, j.job.pos) for j in again] == [(unread.job.shard, 1, 1, 4096)]
    assert sub.crashes == 0 and restarts == []  # not a death: no pass lost, no crash counted


def test_a_plan_whose_workers_keep_dying_fails_once(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    owner, bystander = Owner(), Owner()
    sub = owner.submit(dispatcher, 2)
    engine.take()
    for crash in range(1, MAX_CRASHES + 1):
        engine.restart(0)
        dispatcher.poll()
        assert sub.crashes == crash
        engine.take()
        if crash == 1:
            other = bystander.submit(dispatcher, 100)
            engine.take()
    assert owner.failures == [CRASHED]
    assert dispatcher.slots[sub.plan.slot] is None
    assert plans.generation(engine.shared.plans[sub.plan.slot]) == 0
    assert other.crashes == MAX_CRASHES - 1 and bystander.failures == []  # it came later
    engine.restart(1)
    dispatcher.poll()
    assert owner.failures == [CRASHED]  # told once, however many more die


def test_a_restart_that_held_nothing_of_a_plan_costs_it_nothing(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    sub = Owner().submit(dispatcher, 1)
    [job] = engine.take()
    for _ in range(MAX_CRASHES):
        engine.restart(1 - job.worker)
        dispatcher.poll()
    assert sub.crashes == 0 and dispatcher.slots[sub.plan.slot] is sub


def test_a_refused_plan_fails_with_the_workers_reason(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    target, interface = Owner(), Owner()
    st, si = target.submit(dispatcher, 4), interface.submit(dispatcher, 4)
    jobs = engine.take()
    engine.report(0, pack_result(R_REFUSED, plan_gen=st.plan.gen, a=REFUSE_TARGET))
    engine.report(1, pack_result(R_REFUSED, plan_gen=si.plan.gen, a=REFUSE_INTERFACE, b=errno.ENODEV))
    assert target.failures == []  # told from poll(), never while submitting or reporting
    dispatcher.poll()
    assert target.failures == ["the engine refused the plan: target outside the policy"]
    assert interface.failures == [f"the engine refused the plan: no raw socket on the interface "
                                  f"({os.strerror(errno.ENODEV)})"]
    assert dispatcher.free_slot == 0 and dispatcher.by_gen == {}
    for t in jobs:
        engine.report(t.worker, pack_result(R_REFUSED, plan_gen=t.job.gen, a=REFUSE_TARGET))
    dispatcher.poll()
    assert len(target.failures) == len(interface.failures) == 1


def test_a_full_job_ring_keeps_the_shard_for_later(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    ring = engine.shared.jobs[0]
    while ring.push(bytes(JOB.size)):
        pass
    sub = Owner().submit(dispatcher, 4)
    assert [j.worker for j in engine.take(1)] == []  # the pump stopped at worker 0's full ring
    engine.take(0)  # the junk
    dispatcher.poll()
    assert sorted(j.job.shard for j in engine.take()) == [0, 1, 2, 3] and not sub.pending


def test_a_new_dispatcher_drops_plans_a_dead_control_process_left(engine: FakeEngine) -> None:
    sub = Owner().submit(Dispatcher(engine.shared), 4)
    assert plans.generation(engine.shared.plans[sub.plan.slot]) == sub.plan.gen
    Dispatcher(engine.shared)
    assert all(plans.generation(buf) == 0 for buf in engine.shared.plans)


def test_shard_size_keeps_every_worker_busy_within_bounds() -> None:
    assert shard_size(10, 4) == MIN_SHARD
    assert shard_size(200_000, 4) == 50_000
    assert shard_size(10**9, 2) == SHARD_MAX
