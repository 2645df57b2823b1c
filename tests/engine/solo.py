"""One plan run by one real worker and a dispatcher in the test's own process (the lab tests of
probe types): call it inside the lab's scanner namespace, where the worker's raw sockets open."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import pytest

from netscand.engine import clock
from netscand.engine import plan as plans
from netscand.engine.guard import PlanGuard
from netscand.engine.ranges import of_cidrs
from netscand.engine.shm import Result, Shared
from netscand.engine.worker import Worker
from netscand.scan.dispatch import Dispatcher

GUARD = PlanGuard(of_cidrs(["198.18.0.0/15"]), (), 1000.0)  # the lab alone


class Ran(NamedTuple):
    finished: bool  # within the seconds given
    results: list[Result]
    matched: int  # replies the worker matched to a probe


def run_alone(make: Callable[[int, int], plans.Plan], seconds: float) -> Ran:
    shared = Shared(1)
    worker = Worker(shared, 0, GUARD, lambda: GUARD)
    worker._beat(clock.now())
    dispatcher = Dispatcher(shared)
    results: list[Result] = []
    sub = dispatcher.submit(make, results.append, pytest.fail)
    deadline = clock.now() + seconds
    while not sub.finished and clock.now() < deadline:
        worker.step(clock.now())
        dispatcher.poll()
        time.sleep(0.005)
    for rx in worker.rx.values():
        rx.close()
    return Ran(sub.finished, results, worker.replies.matched)
