"""A paced plan's header: its fields go through the slot, a header whose pacing does not add up
is refused, and its host-major layout tallies as the port-major one does."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from netscand.engine import plan as plans
from netscand.engine import tally
from netscand.engine.shm import PLAN_BYTES, S_CLOSED, S_NONE, S_OPEN, S_UNREACH

KINDS = {1, 6}


def paced(**fields: object) -> plans.Plan:
    nh, np_ = 3, 40
    base = plans.Plan(gen=7, kind=6, slot=1, share=1, retries=1, key=b"k" * 16, ifindex=2, src_ip=1,
                      src_mac=b"\1" * 6, sport_base=61440 + 1024, rate=100.0, timeout_init_ms=1000,
                      timeout_min_ms=100, timeout_max_ms=3000, shard_size=2 * np_,
                      hosts=tuple(range(100, 100 + nh)), macs=(b"\2" * 6,) * nh, ports=tuple(range(1, 1 + np_)),
                      gap_ms=3500, jitter_ms=1000, silent_probes=30, sport_lo=32768, sport_hi=60999)
    return replace(base, **fields)  # type: ignore[arg-type]


def through_slot(plan: plans.Plan) -> plans.Plan | None:
    buf = memoryview(bytearray(PLAN_BYTES))
    plans.write(buf, plan)
    return plans.read(buf, plan.slot, KINDS)


def test_a_paced_plan_reads_back_as_written() -> None:
    plan = paced()
    assert plan.paced and through_slot(plan) == plan
    assert through_slot(replace(plan, gap_ms=0, jitter_ms=0, silent_probes=0, sport_lo=0, sport_hi=0)) is not None


@pytest.mark.parametrize("fields", [
    {"sport_lo": 5000, "sport_hi": 4000},  # an empty range
    {"sport_lo": 0, "sport_hi": 4000},  # port 0 is no source port
    {"shard_size": 50},  # a shard splitting a host: two workers would share its gap
    {"gap_ms": plans.PACED_MAX_MS + 1},
    {"jitter_ms": 0xFFFFFFFF},
    {"silent_probes": 41},  # more silent probes than ports
    {"gap_ms": 0},  # jitter and silent probes without a gap: not a plan the control process writes
    {"gap_ms": 0, "jitter_ms": 0},
])
def test_a_paced_header_that_does_not_add_up_is_refused(fields: dict[str, int]) -> None:
    with pytest.raises(plans.PlanError):
        through_slot(paced(**fields))


def test_the_layouts_map_index_and_pair_both_ways() -> None:
    for plan in (paced(), paced(gap_ms=0, jitter_ms=0, silent_probes=0)):
        seen = {plan.index(h, p) for h in range(len(plan.hosts)) for p in range(len(plan.ports))}
        assert seen == set(range(plan.size))
        assert all(plan.index(*plan.pair(i)) == i for i in range(plan.size))
    assert paced().index(1, 0) == 40  # host-major: a host's ports are one run


def test_a_paced_tally_is_the_unpaced_tally_of_the_same_answers() -> None:
    rng = random.Random(12)
    hp = paced(shard_size=120)
    hu = replace(hp, gap_ms=0, jitter_ms=0, silent_probes=0)
    answers = {(h, p): rng.choice((S_NONE, S_NONE, S_CLOSED, S_OPEN, S_UNREACH)) for h in range(3) for p in range(40)}
    answers.update({(2, p): S_CLOSED for p in range(40)})  # a host with more closed ports than are listed
    answers.update({(1, p): S_NONE for p in range(40)})  # and one that answered nothing
    for plan in (hp, hu):
        assert plan.shards == 1
    states = {}
    for plan in (hp, hu):
        buf = bytearray(plan.size)
        for (h, p), v in answers.items():
            buf[plan.index(h, p)] = v
        states[plan.gap_ms] = sorted(tally.ports(plan, 0, bytes(buf)))
    assert states[hp.gap_ms] == states[0] and states[0]


@pytest.mark.parametrize(("fields", "name"), [
    ({"gap_ms": 99_999_999_999}, "gap_ms"),
    ({"retries": 256}, "retries"),
    ({"timeout_init_ms": -1}, "timeout_init_ms"),
    ({"sport_hi": 70_000}, "sport_hi"),
    ({"silent_probes": 2**32}, "silent_probes"),
    ({"key": b"short"}, "key"),
    ({"ports": tuple(range(1, 40)) + (65536,)}, "ports"),
    ({"hosts": (100, 101, 2**32)}, "hosts"),
    ({"macs": (b"\2" * 6, b"\2" * 6, b"\2")}, "macs"),
])
def test_a_field_the_slot_cannot_hold_is_refused_by_name_before_anything_is_written(
        fields: dict[str, object], name: str) -> None:
    buf = memoryview(bytearray(PLAN_BYTES))
    with pytest.raises(ValueError, match=f"plan field {name}"):
        plans.write(buf, paced(**fields))
    assert not any(buf)
