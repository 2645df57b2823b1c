"""A shard's coverage counts (engine/coverage.py): probes sent, answered, retried, and recovered
by a retry, counted at the ends of passes from the shard's state bytes, per shard on its R_DONE
and per host that answered on an R_COVER. A real Worker on socket pairs (test_worker_frames.py's
rig) for unpaced shards; the paced schedule on a simulated clock for paced ones."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netscand.engine import coverage
from netscand.engine.coverage import Counts
from netscand.engine.paced import Schedule
from netscand.engine.plan import Plan
from netscand.engine.shm import R_COVER, R_DONE, S_CLOSED, S_OPEN, Result, pack_result
from tests.engine.test_paced import STEP, paced_plan
from tests.engine.test_worker_frames import H0, H1, T0, Rig, by_target, make_plan, reply


def test_counts_from_the_states_at_each_retry_pass() -> None:
    # Four probes: one answered at once, one on the first retry, one on the second, one never.
    before = [bytes([1, 0, 0, 0]), bytes([1, 2, 0, 0])]
    assert coverage.counted(bytes([1, 2, 2, 0]), before) == Counts(sent=4 + 3 + 2, answered=3, retried=5,
                                                                   recovered=2)
    assert coverage.counted(bytes([1, 0]), []) == Counts(2, 1, 0, 0)  # no retry pass: nothing recovered


def test_per_host_counts_skip_hosts_that_answered_nothing() -> None:
    plan = make_plan(0, 1)  # port-major, two hosts, three ports, shards of three
    # Shard 0 is (H0, 22), (H1, 22), (H0, 80): H1 answers nothing, H0 its port 80 on a retry.
    got = dict(coverage.by_host(plan, 0, bytes([1, 0, 2]), [bytes([1, 0, 0])]))
    assert got == {0: Counts(sent=3, answered=2, retried=1, recovered=1)}


@st.composite
def shards(draw: st.DrawFn) -> tuple[Plan, int, bytes, list[bytes]]:
    """A plan of random shape, and one shard's final states and states at each retry pass's
    start: each probe answered (with a random state) on a random attempt, or never."""
    nh, np_ = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    retries = draw(st.integers(0, 4))
    shard_size = draw(st.integers(1, nh * np_))
    plan = Plan(gen=1, kind=1, slot=0, share=1, retries=retries, key=b"k" * 16, ifindex=1, src_ip=1,
                src_mac=b"\0" * 6, sport_base=61440, rate=1.0, timeout_init_ms=1000, timeout_min_ms=100,
                timeout_max_ms=3000, shard_size=shard_size, hosts=tuple(range(1, nh + 1)),
                macs=(b"\0" * 6,) * nh, ports=tuple(range(1, np_ + 1)))
    shard = draw(st.integers(0, plan.shards - 1))
    start, end = plan.shard_range(shard)
    probes = draw(st.lists(st.tuples(st.integers(0, retries + 1), st.integers(1, 255)),
                           min_size=end - start, max_size=end - start))
    final = bytes(state if at <= retries else 0 for at, state in probes)
    before = [bytes(state if at <= j else 0 for at, state in probes) for j in range(retries)]
    return plan, shard, final, before


@given(shards())
def test_per_host_counts_are_each_hosts_own_rows_counted(drawn: tuple) -> None:
    """by_host's one pass over probe codes counts what counting each host's rows would."""
    plan, shard, final, before = drawn
    rows = zip(plan.rows(shard, final), *(plan.rows(shard, b) for b in before))
    naive = {host: coverage.counted(seg, [row[2] for row in earlier])
             for (host, _, seg), *earlier in rows if seg.count(0) < len(seg)}
    assert dict(coverage.by_host(plan, shard, final, before)) == naive


def test_the_record_carries_its_counts_and_a_record_without_them_reads_none() -> None:
    counts = Counts(70000, 3, 65536, 2)
    assert coverage.unpack(coverage.pack(counts)) == counts
    assert coverage.unpack(b"") == Counts() and coverage.unpack(b"\1" * 5) == Counts()
    raw = pack_result(R_DONE, opts=coverage.pack(counts))
    assert coverage.unpack(Result.unpack(raw).opts) == counts


def test_a_worker_reports_what_each_shard_and_host_sent_and_recovered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shard 0 is (H0, 22), (H1, 22), (H0, 80); shard 1 is (H1, 80), (H0, 443), (H1, 443). (H0, 80)
    never answers; (H1, 443) answers its first retry."""
    rig = Rig(monkeypatch, retries=2)
    rig.step(T0, times=4)
    for (host, port), probe in by_target(rig.link.sent()).items():
        if (host, port) not in ((H0, 80), (H1, 443)):
            rig.link.reply(reply(probe, flags=0x12 if port == 22 else 0x14))
    rig.step(T0 + 0.05)
    rig.step(T0 + 1.0, times=2)  # timed out: both shards' first retry passes go
    again = by_target(rig.link.sent())
    assert sorted(again) == [(H0, 80), (H1, 443)]
    rig.link.reply(reply(again[H1, 443], flags=0x14))
    now = T0 + 1.0
    while not rig.sub.finished and now < T0 + 5:
        now += 0.05
        rig.step(now, times=2)
    assert rig.sub.finished
    assert sorted(by_target(rig.link.sent())) == [(H0, 80)]  # only it, once more

    done = {r.shard: (r.state, coverage.unpack(r.opts)) for r in rig.results if r.kind == R_DONE}
    assert done == {0: (2, Counts(sent=5, answered=2, retried=2, recovered=0)),
                    1: (2, Counts(sent=4, answered=3, retried=1, recovered=1))}
    hosts = {(r.shard, r.ip): coverage.unpack(r.opts) for r in rig.results if r.kind == R_COVER}
    assert hosts == {(0, H0): Counts(4, 1, 2, 0), (0, H1): Counts(1, 1, 0, 0),
                     (1, H1): Counts(3, 2, 1, 1), (1, H0): Counts(1, 1, 0, 0)}
    # What the worker counted probe by probe, for its row in the worker table.
    assert rig.worker.shards.sent == sum(c.sent for _, c in done.values())


def test_a_paced_schedule_counts_each_hosts_probes_and_retry_rounds() -> None:
    """Host 0 answers port 20 at once and port 21 only in its retry round; the others answer nothing."""
    plan = paced_plan(nh=2, np_=3, gap_ms=10, jitter_ms=0, retries=1)
    states = memoryview(bytearray(plan.shard_size))
    schedule = Schedule(plan, 0, states, 0.0)
    now, rounds = 0.0, {}
    while not schedule.finished(now) and now < 5:
        while (hit := schedule.pop(now, 0.1)) is not None:
            host, port = hit
            rounds[hit] = rounds.get(hit, -1) + 1
            if host == 0 and (port == 0 or (port == 1 and rounds[hit] == 1)):
                states[plan.index(*hit)] = S_OPEN if port == 0 else S_CLOSED
        now += STEP
    assert schedule.counts(0) == Counts(sent=3 + 2, answered=2, retried=2, recovered=1)
    assert schedule.counts(1) == Counts(sent=6, answered=0, retried=3, recovered=0)
