"""The closed loop in the lab (netscand/lab/adapt.py): an adaptive plan over every port of the
lab's on-link hosts, whose link is throttled to LIMIT frames/s a second into the scan and
released three seconds later. The rate climbs before the throttle, falls to about the throttle
once it is on, climbs back once it is lifted, and every open port of the lab's truth is found.
The bounds are on what the loop did, generous in time: a loaded 2-core machine sends slower
but the loop reacts to its samples, not to the clock."""

from __future__ import annotations

import statistics

import pytest

from netscand.lab import adapt
from tests.conftest import LabFactory

pytestmark = pytest.mark.lab

LIMIT = 5_000
CEILING = 100_000.0
THROTTLE_AT, LIFT_AT = 1.0, 4.0


def test_the_rate_falls_under_a_throttle_and_climbs_back_once_it_is_lifted(lab_factory: LabFactory) -> None:
    with lab_factory(hosts=8, seed=1) as lab:
        run = adapt.run(lab, 3, range(1, 65536), CEILING,
                        [adapt.Phase(THROTTLE_AT, LIMIT), adapt.Phase(LIFT_AT, 0)], timeout_s=120)
    assert run.finished
    assert run.found == run.truth and run.truth  # recall 100 %
    before = [p for p in run.trace if p.t < THROTTLE_AT]
    during = [p for p in run.trace if THROTTLE_AT <= p.t < LIFT_AT]
    after = [p for p in run.trace if p.t >= LIFT_AT]
    assert max(p.rate for p in before) >= 4 * LIMIT  # it climbed from its initial 5,000/s
    # Within the throttle's first second it is down near the throttle, and it stays about there.
    assert min(p.rate for p in during if p.t < THROTTLE_AT + 1) <= 1.5 * LIMIT
    assert statistics.median(p.rate for p in during if p.t >= THROTTLE_AT + 1) <= 2.5 * LIMIT
    assert max(p.loss for p in during) > 0.2  # the loop saw the loss it reacted to
    assert max(p.rate for p in after) >= 4 * LIMIT
