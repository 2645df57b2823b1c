"""Running scans share the engine: a real Worker sends every running plan at once, in turn, each
at its own plan's rate and all of them within the worker's ceiling, and a real Dispatcher hands
the plans' shards out in turn. The workers are stepped by hand, on a clock the test moves, over
a real shared region. Each plan's frames go through a real Sender into one end of a Unix socket
pair and are counted at the other end by destination address (each plan has hosts of its own),
so nothing leaves the process and no raw socket is needed."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable

import pytest

from netscand.engine import plan as plans
from netscand.engine.guard import PlanGuard
from netscand.engine.probes import tcp_syn
from netscand.engine.ranges import of_cidrs
from netscand.engine.shards import IDLE_WAIT, PlanState
from netscand.engine.shm import (
    PLAN_SHARDS,
    PLAN_SLOTS,
    R_DONE,
    SHARD_SLOTS,
    Job,
    Shared,
    pack_result,
)
from netscand.engine.sockets import Sender
from netscand.engine.worker import Worker
from netscand.scan.dispatch import Dispatcher, Submitted

SRC_IP = 0xC6120001  # 198.18.0.1
DT = 0.001  # the test's clock moves by this much a step


def net(n: int) -> int:
    """The first host address of plan n: 198.18.n.1."""
    return 0xC6120001 + (n << 8)


class Engine:
    """Workers and the control side over one shared region; the workers are stepped by hand."""

    def __init__(self, workers: int = 1, max_rate: float = 1000.0) -> None:
        guard = PlanGuard(of_cidrs(["198.18.0.0/15"]), (), max_rate)
        self.shared = Shared(workers)
        self.workers = [Worker(self.shared, w, guard, lambda: guard) for w in range(workers)]
        for worker in self.workers:
            worker._beat(time.monotonic())  # its generation, before the dispatcher reads it
        self.dispatcher = Dispatcher(self.shared)
        self.out, self.into = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.into.setblocking(False)
        self.frames: Counter[int] = Counter()  # per plan number (the third octet of the target)
        self.now = time.monotonic()
        self.failures: list[str] = []

    def submit(self, n: int, hosts: int, ports: int, rate: float, retries: int = 0) -> Submitted:
        """Plan n: hosts 198.18.n.1-, ports 1-, shards of 1024 probes, a 100 ms reply timeout."""
        def make(slot: int, gen: int) -> plans.Plan:
            addrs = tuple(net(n) + i for i in range(hosts))
            return plans.Plan(gen=gen, kind=tcp_syn.PROBE.kind, slot=slot, share=1, retries=retries,
                              key=bytes([n]) * 16, ifindex=1, src_ip=SRC_IP, src_mac=b"\2" * 6,
                              sport_base=61440, rate=rate, timeout_init_ms=100, timeout_min_ms=100,
                              timeout_max_ms=100, shard_size=1024, hosts=addrs,
                              macs=(b"\2\0\0\0\0\1",) * hosts, ports=tuple(range(1, ports + 1)))

        sub = self.dispatcher.submit(make, lambda r: None, self.failures.append)
        for worker in self.workers:  # what _plan would build, but with the socket pair to send into
            worker.plans[sub.plan.slot] = PlanState(sub.plan, Sender(self.out))
        return sub

    def step(self, until: Callable[[], bool] | None = None, seconds: float = DT) -> float:
        """Move the clock and step every worker, then the control side, for `seconds` or until
        `until()`; returns the time it took."""
        start = self.now
        while self.now < start + seconds - DT / 2 and not (until and until()):
            self.now += DT
            for worker in self.workers:
                worker.step(self.now)
            self.count()
            self.dispatcher.poll()
        return self.now - start

    def count(self) -> None:
        while True:
            try:
                frame = self.into.recv(256)
            except BlockingIOError:
                return
            self.frames[frame[32]] += 1  # the IPv4 destination's third octet


def test_a_slow_plan_does_not_hold_up_a_fast_one() -> None:
    """At 1 probe/s a 1024-probe shard takes 17 minutes; a plan that comes after it is sent at
    its own rate beside it, from the worker's first step on."""
    engine = Engine()
    slow = engine.submit(1, hosts=4, ports=1024, rate=1.0)
    fast = engine.submit(2, hosts=2, ports=500, rate=500.0)
    took = engine.step(until=lambda: fast.finished, seconds=10)
    assert fast.finished and took < 2.5, took  # 1000 probes at 500/s, then a 100 ms wait
    assert engine.frames[2] == 1000
    assert 2 <= engine.frames[1] <= 4  # the slow plan went on meanwhile, at its own rate
    assert not slow.finished and not engine.failures


def test_plans_are_sent_side_by_side_and_the_ceiling_holds_for_all() -> None:
    """max_rate 1000, one worker: three plans at once get the ceiling in all, the one asking
    less gets what it asks, the two asking more split the rest evenly."""
    engine = Engine(max_rate=1000.0)
    for n, rate in ((1, 1000.0), (2, 1000.0), (3, 100.0)):
        engine.submit(n, hosts=4, ports=2048, rate=rate)
    engine.step(seconds=0.1)  # every plan's first shard started
    assert len(engine.workers[0].shards.sending) == 3
    engine.frames.clear()
    seconds = engine.step(seconds=4.0)
    total = sum(engine.frames.values())
    assert 0.95 * 1000 * seconds <= total <= 1000 * seconds + 64
    assert abs(engine.frames[3] - 100 * seconds) <= 2
    assert abs(engine.frames[1] - engine.frames[2]) <= 2
    assert engine.frames[1] >= 0.95 * 450 * seconds


def test_the_wait_is_until_the_soonest_run_may_send() -> None:
    engine = Engine(max_rate=1000.0)
    engine.submit(1, hosts=1, ports=1024, rate=20.0)  # a probe every 50 ms, none saved up
    engine.submit(2, hosts=1, ports=1024, rate=40.0)  # every 25 ms
    worker, now = engine.workers[0], engine.now
    assert worker.step(now) == worker.step(now) == 0.0  # the first probe of each
    assert len(worker.shards.sending) == 2
    engine.count()
    sent = engine.frames.copy()
    assert sent == {1: 1, 2: 1}
    wait = worker.step(now)
    assert wait == pytest.approx(0.025)  # until plan 2's next probe, not plan 1's
    assert worker.step(now + 0.9 * wait) == pytest.approx(0.1 * wait)  # nothing sent yet
    assert worker.step(now + wait + 1e-9) == 0.0
    engine.count()
    assert engine.frames - sent == {2: 1}


def test_a_slow_plan_does_not_put_the_loop_to_sleep() -> None:
    """Its next probe is a second off; the worker still beats and reads its rings meanwhile."""
    engine = Engine()
    engine.submit(1, hosts=1, ports=1024, rate=1.0)
    worker = engine.workers[0]
    assert worker.step(engine.now) == 0.0
    assert worker.step(engine.now) == IDLE_WAIT


def test_a_plans_shards_take_turns_in_a_worker_one_pass_sending_at_a_time() -> None:
    """One shard sends while the previous one waits for replies; a retry pass waits until the
    pass being sent is done. Nothing answers here, so every probe goes twice."""
    engine = Engine(max_rate=2000.0)
    sub = engine.submit(1, hosts=1, ports=4096, rate=2000.0, retries=1)
    worker = engine.workers[0]
    seen_waiting_beside, seen_held = False, False

    def check() -> bool:
        nonlocal seen_waiting_beside, seen_held
        assert len(worker.shards.sending) <= 1
        assert len(worker.shards.free) >= SHARD_SLOTS - PLAN_SHARDS
        seen_waiting_beside |= bool(worker.shards.sending and worker.shards.waiting)
        seen_held |= bool(worker.shards.held)
        return sub.finished

    engine.step(until=check, seconds=20)
    assert sub.finished and seen_waiting_beside and seen_held
    assert engine.frames[1] == 2 * 4096
    assert not worker.shards.sending and not worker.shards.held and not worker.shards.waiting
    assert len(worker.shards.free) == SHARD_SLOTS


def test_the_dispatcher_gives_every_plan_room_on_every_worker() -> None:
    engine = Engine(workers=2)
    subs = [engine.submit(n, hosts=8, ports=1024, rate=100.0) for n in range(1, PLAN_SLOTS + 1)]
    for assigned in engine.dispatcher.assigned:
        assert Counter(gen for gen, _ in assigned) == {s.plan.gen: PLAN_SHARDS for s in subs}
        assert len(assigned) == SHARD_SLOTS
    # A shard done: its worker gets the same plan's next shard (every other plan has its share).
    first = subs[0]
    (gen, shard), *_ = engine.dispatcher.assigned[0]
    assert gen == first.plan.gen
    engine.shared.results[0].push(pack_result(R_DONE, plan_gen=gen, shard=shard))
    pending = len(first.pending)
    engine.dispatcher.poll()
    assert len(first.pending) == pending - 1
    assert Counter(g for g, _ in engine.dispatcher.assigned[0])[gen] == PLAN_SHARDS


def test_a_restarted_workers_shards_are_given_again_to_the_plans_in_turn() -> None:
    engine = Engine(workers=2)
    subs = [engine.submit(n, hosts=8, ports=1024, rate=100.0) for n in range(1, PLAN_SLOTS + 1)]
    stale = len(engine.shared.jobs[0])
    Worker(engine.shared, 0, engine.workers[0].intake.guard, lambda: engine.workers[0].intake.guard)._beat(time.monotonic())
    engine.dispatcher.poll()
    epoch = engine.shared.worker_row(0).generation
    jobs = [Job.unpack(raw) for raw in engine.shared.jobs[0].pop_many(64)][stale:]
    assert all(job.epoch == epoch for job in jobs)
    order = [next(i for i, s in enumerate(subs) if s.plan.gen == job.gen) for job in jobs]
    assert order == list(range(PLAN_SLOTS)) * PLAN_SHARDS
    assert all(s.crashes == 1 for s in subs) and not engine.failures
