"""scan/resume.py without an engine: where a shard goes on after a restart (first_pass), a spec
kept as JSON comes back the same, each plan's passes are granted against its own retries, and a
resumed scan's rate under the policy of now."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from netscand.engine.shm import (
    MARK_BASE,
    MARK_PASS_END,
    R_DONE,
    R_MARK,
    R_PORT,
    R_TALLY,
    S_OPEN,
    Result,
    pack_result,
)
from netscand.scan import resume
from netscand.scan.dispatch import Dispatcher
from netscand.scan.orchestrator import _resumed
from netscand.scan.policy import PolicyError
from netscand.scan.resume import GRACE_S, Checkpoint, first_pass, spec_from_json, spec_json
from netscand.scan.spec import Discovery, Pacing, ScanSpec
from netscand.scan.targets import Targets
from netscand.store.checkpoints import ShardRow, Stored
from tests.scan.harness import policy
from tests.scan.test_runner_unit import FakeNet

RETRIES = 3


def row(granted: int, attempt: int, pos: int, base: bool) -> ShardRow:
    return ShardRow(1, 0, 0, False, granted, attempt, pos, base)


def test_a_shard_goes_on_from_its_position_in_a_new_pass_when_a_retry_is_left_for_what_came_before() -> None:
    assert first_pass(row(0, 0, 8192, True), RETRIES) == (1, 8192)
    assert first_pass(row(1, 1, 100, True), RETRIES) == (2, 100)


def test_the_pass_is_resent_whole_when_its_position_is_unknown_or_no_retry_would_ask_the_rest_again() -> None:
    assert first_pass(row(0, -1, 0, False), RETRIES) == (1, 0)  # handed out, no position told yet
    assert first_pass(row(1, 0, 8192, True), RETRIES) == (2, 0)  # its retry pass was granted since
    assert first_pass(row(1, 1, 50, False), RETRIES) == (2, 0)  # a retry pass: its order died with it
    assert first_pass(row(2, 2, 8192, True), RETRIES) == (3, 0)  # the last pass: nothing after it


def test_a_shard_whose_last_pass_was_granted_has_none_left() -> None:
    assert first_pass(row(RETRIES, RETRIES, 10, True), RETRIES) is None
    assert first_pass(row(0, 0, 10, True), 0) is None


def test_a_spec_comes_back_from_its_json() -> None:
    specs = [ScanSpec(Targets(((1, 5), (9, 9))), (22, 80), 1000.0, 3, pacing=Pacing(1, 2, 3, 4)),
             ScanSpec(Targets(((1, 5),)), tuple(range(1, 65536)), 1e5, 0, timeout_ms=300, host_timeout_s=2.5,
                      discovery=None, udp_ports=(53, 161), profiling=True, detect_services=True, cve_match=True),
             ScanSpec(Targets(((7, 7),)), (443,), 10.0, 1, discovery=Discovery(False, (), (80,)), max_hosts=4)]
    for spec in specs:
        assert spec_from_json(spec_json(spec)) == spec


def _work(group: int = 1, index: int = 0, retries: int | None = None) -> SimpleNamespace:
    return SimpleNamespace(group=group, index=index, probe=SimpleNamespace(kind=1, retries=retries), ports=(22, 80))


def _record(kind: int, shard: int = 0, **fields: int) -> Result:
    return Result.unpack(pack_result(kind, plan_gen=9, shard=shard, **fields))


def test_open_ports_are_kept_at_once_and_a_tally_and_its_counts_only_with_its_shards_end() -> None:
    cp, work = Checkpoint(RETRIES), _work()
    cp.planned(work, (1, 2), SimpleNamespace(gen=9, timeout_max_ms=0, key=b"k" * 16, shard_size=1024, retries=RETRIES))
    assert not cp.submission(work)["gate"]([0, 1])  # not handed out before its row is written
    cp.record(work, _record(R_PORT, state=S_OPEN, ip=1, port=22))
    cp.record(work, _record(R_TALLY, ip=1, a=5))
    first = cp.take()
    assert [Result.unpack(r.record).kind for r in first.records] == [R_PORT]
    assert [(r.shard, r.granted, r.done) for r in sorted(first.shards)] == [(0, 0, False), (1, 0, False)]
    assert len(first.plans) == 1
    assert cp.written(first) == [] and cp.submission(work)["gate"]([0, 1])
    cp.record(work, _record(R_DONE))
    done = cp.take()
    assert [Result.unpack(r.record).kind for r in done.records] == [R_TALLY, R_DONE]  # R_DONE: its coverage counts
    assert [(r.shard, r.done) for r in done.shards] == [(0, True)]


def test_a_position_is_kept_once_past_its_grace_and_a_retry_pass_granted_once_written(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(resume.time, "monotonic", lambda: now[0])
    cp, work = Checkpoint(RETRIES), _work()
    cp.planned(work, (1, 2), SimpleNamespace(gen=9, timeout_max_ms=1000, key=b"k" * 16, shard_size=1024, retries=RETRIES))
    cp.submission(work)["gate"]([0])
    cp.written(cp.take())
    cp.mark(work, _record(R_MARK, a=0, b=4096, flags=MARK_BASE))
    assert cp.take().shards == []  # within the plan's reply timeout (1 s) + GRACE_S: not yet
    now[0] += 1 + GRACE_S
    cp.mark(work, _record(R_MARK, a=0, b=8192, flags=MARK_BASE | MARK_PASS_END))
    assert cp.urgent  # the worker waits for its retry pass's grant
    delta = cp.take()
    assert [(r.granted, r.attempt, r.pos, r.base) for r in delta.shards] == [(1, 0, 4096, True)]
    assert cp.written(delta) == [(9, 0, 1)]


def _granted(cp: Checkpoint, work: SimpleNamespace, attempt: int) -> list[tuple[int, int, int]]:
    """The grants a pass's end (attempt) leads to, once its write is done."""
    cp.mark(work, _record(R_MARK, a=attempt, b=8, flags=MARK_PASS_END))
    return cp.written(cp.take())


@pytest.mark.parametrize("scan_retries", [0, 1])
def test_an_arp_plan_is_granted_its_own_retries_under_a_scan_with_fewer(scan_retries: int) -> None:
    # ARP fixes retries=2 (engine/probes/arp.py): counted against the scan's 0 or 1, its shard
    # would wait for ever for a grant that never comes, and the scan would never end.
    cp, arp = Checkpoint(scan_retries), _work(retries=2)
    cp.submission(arp)["gate"]([0])
    cp.planned(arp, (1, 2), SimpleNamespace(gen=9, timeout_max_ms=500, key=b"k" * 16, shard_size=8, retries=2))
    cp.written(cp.take())
    assert _granted(cp, arp, 0) == [(9, 0, 1)]
    assert _granted(cp, arp, 1) == [(9, 0, 2)]
    assert _granted(cp, arp, 2) == []  # its last pass


def test_a_restart_gives_an_arp_plan_no_pass_past_its_own_bound() -> None:
    arp = _work(retries=2)
    stored = SimpleNamespace(plans={}, records={}, shards={(1, 0): {0: ShardRow(1, 0, 0, False, 2, 2, 4, True),
                                                                     1: ShardRow(1, 0, 1, False, 1, 1, 4, True)}})
    sub = Checkpoint(5, stored).submission(arp)  # the scan's 5 would allow passes 3, 4 and 5
    assert sub["done"] == {0} and sub["starts"] == {1: (2, 0)}
    cp = Checkpoint(5)
    cp.submission(arp)["gate"]([0])
    cp.planned(arp, (1, 2), SimpleNamespace(gen=9, timeout_max_ms=500, key=b"k" * 16, shard_size=8, retries=2))
    cp.written(cp.take())
    assert _granted(cp, arp, 0) and _granted(cp, arp, 1)
    cp.mark(arp, _record(R_MARK, a=2, b=8, flags=MARK_PASS_END))
    assert cp.submission(arp)["restart"](0) is None  # its worker died after its last pass


def _stored(spec: ScanSpec, rate: float | None) -> Stored:
    return Stored(spec_json(spec), False, rate, {}, {}, {})


def test_a_scan_that_gave_no_rate_resumes_under_a_lowered_max_rate_at_it(dispatcher: Dispatcher) -> None:
    # Its spec's rate is the engine's ceiling, not a user's: the policy caps it, as a queued one's.
    spec = ScanSpec(Targets(((0xC6120002, 0xC6120005),)), (22,), 50000.0, 3)
    run = _resumed(_stored(spec, None), policy(), dispatcher, FakeNet())
    assert run.spec.rate == policy().max_rate == 5000.0
    with pytest.raises(PolicyError, match="rate 20000 is above"):  # a rate its request asked for
        _resumed(_stored(spec, 20000.0), policy(), dispatcher, FakeNet())
