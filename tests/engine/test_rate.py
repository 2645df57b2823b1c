"""The closed loop's decisions (engine/rate.py) on made-up reply patterns: it climbs while
replies keep pace, falls to about what got through when they do not, is not held down by loss
that a lower rate does not cure, holds on a growing RTT, and keeps its memory bounded."""

from __future__ import annotations

import random

from netscand.engine import rate
from netscand.engine.rate import RateControl
from netscand.engine.shm import SHARD_KEY, SHARD_STATES

CEILING = 100_000.0
TIMEOUT = 0.1


def shard(length: int = 1 << 16) -> memoryview:
    view = memoryview(bytearray(SHARD_STATES + length))
    SHARD_KEY.pack_into(view, 0, 7, 0)
    return view


def epoch(control: RateControl, view: memoryview, now: float, answer: float,
          rng: random.Random, srtt: float | None = 0.001) -> tuple[float, rate.Decision]:
    """Probes sent at the control's rate until it decides; each answered with chance `answer`."""
    off = 0
    while True:
        batch = max(1, min(64, int(control.rate / 50)))  # as a Pacer's burst lets them out
        control.sample(now, view, off, batch)
        view[SHARD_STATES + off] = 2 if rng.random() < answer else 0
        off = (off + 1) % (len(view) - SHARD_STATES)
        now += batch / control.rate
        decision = control.update(now, TIMEOUT, srtt)
        if decision is not None:
            return now, decision


def test_it_starts_low_and_doubles_to_the_ceiling_while_every_probe_is_answered() -> None:
    control, view, rng, now = RateControl(CEILING, 2), shard(), random.Random(1), 0.0
    assert control.rate == rate.INITIAL / 2
    rates = []
    for _ in range(8):
        now, d = epoch(control, view, now, 1.0, rng)
        rates.append(d.rate)
        assert d.loss == 0
    assert rates[:4] == [5_000, 10_000, 20_000, 40_000]
    assert rates[-1] == CEILING


def test_congestion_brings_it_down_to_what_got_through_and_it_climbs_back_once_lifted() -> None:
    control, view, rng, now = RateControl(CEILING, 1), shard(), random.Random(2), 0.0
    for _ in range(6):
        now, d = epoch(control, view, now, 1.0, rng)
    high = control.rate
    now, d = epoch(control, view, now, 0.25, rng)  # a throttle lets a quarter through
    assert d.reason == "loss" and 0.6 < d.loss < 0.9
    assert d.rate < high * 0.35
    for _ in range(30):
        now, d = epoch(control, view, now, 1.0, rng)
    assert control.rate == CEILING
    assert control.slow_start is False


def test_random_loss_a_slower_rate_does_not_cure_does_not_hold_it_down() -> None:
    control, view, rng, now = RateControl(CEILING, 1), shard(), random.Random(3), 0.0
    reasons = []
    for _ in range(40):
        now, d = epoch(control, view, now, 0.9, rng)  # 5 % loss each way
        reasons.append(d.reason)
    assert control.rate == CEILING
    assert reasons.count("loss") <= 2


def test_a_growing_rtt_holds_the_rate() -> None:
    control, view, rng, now = RateControl(CEILING, 1), shard(), random.Random(4), 0.0
    now, d = epoch(control, view, now, 1.0, rng, srtt=0.002)
    held = control.rate
    now, d = epoch(control, view, now, 1.0, rng, srtt=0.060)
    assert d.reason == "delay" and control.rate == held


def test_samples_of_a_shard_slot_taken_over_by_another_shard_are_not_counted() -> None:
    control, view = RateControl(CEILING, 1), shard()
    for off in range(rate.MIN_SAMPLES):
        control.sample(0.0, view, off, 1)
    SHARD_KEY.pack_into(view, 0, 7, 1)  # the slot now holds shard 1
    assert control.update(1.0, TIMEOUT, None) is None
    assert control.resolved == 0 and not control.samples


def test_pending_samples_are_bounded() -> None:
    control, view = RateControl(CEILING, 1), shard()
    for off in range(3 * rate.SAMPLE_CAP):
        control.sample(0.0, view, off, 64)
    assert len(control.samples) == rate.SAMPLE_CAP


def test_it_never_falls_below_the_floor_nor_starts_above_its_ceiling() -> None:
    control, view, rng, now = RateControl(300.0, 4), shard(), random.Random(5), 0.0
    assert control.rate == 300.0
    for answer in (1.0, 0.0, 0.0, 0.0, 0.0):
        now, _ = epoch(control, view, now, answer, rng)
    assert control.rate == rate.FLOOR


def test_a_sparse_sweep_is_not_read_as_loss() -> None:
    """One address in a hundred answers (a /16 with few live hosts): an epoch's 48 samples hold
    none or one or two answers, noise the loop must not back off for."""
    control, view, rng, now = RateControl(CEILING, 1), shard(), random.Random(6), 0.0
    reasons = []
    for _ in range(20):
        now, d = epoch(control, view, now, 0.01, rng)
        reasons.append(d.reason)
    assert "loss" not in reasons
    assert control.rate == CEILING
