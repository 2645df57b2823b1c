"""engine/shards.py's wait for a retry pass's grant (a gated shard: scan/resume.py), without
sockets: a pass that waits builds no list of its shard's unanswered probes, a shard all answered
ends without waiting for any grant, and a granted one retries only what got no answer; and a
resumed shard's coverage, which gives no loss evidence."""

from __future__ import annotations

import pytest

from netscand.engine import coverage
from netscand.engine import plan as plans
from netscand.engine.coverage import Counts
from netscand.engine.shards import PlanState, ShardRun, Shards
from netscand.engine.shm import R_DONE, SHARD_STATES, Result, Shared
from tests.engine.test_worker_frames import make_plan


class Rig:
    def __init__(self, retries: int = 1, attempt: int = 0, pos: int = 0) -> None:
        self.shared = Shared(1)
        self.records: list[Result] = []
        self.shards = Shards(self.shared, 0, lambda raw: self.records.append(Result.unpack(raw)), 0)
        plan = make_plan(0, 7, retries=retries)
        plans.write(self.shared.plans[0], plan)
        self.state = PlanState(plan, send=None)  # type: ignore[arg-type]  # nothing is sent here
        self.shards.start(self.state, 0, attempt, pos, gated=True)
        self.run = self.shards.sending.popleft()
        self.run.pos = self.run.total  # its first pass sent: it waits for late replies
        self.shards.waiting.append(self.run)

    def answer(self, *offsets: int) -> None:
        for off in offsets:
            self.shared.shards[self.run.shard_slot][SHARD_STATES + off] = 1


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times a run built its list of unanswered probes."""
    calls: list[int] = []
    real = ShardRun.unanswered

    def counted(run: ShardRun) -> list[int]:
        calls.append(run.shard)
        return real(run)

    monkeypatch.setattr(ShardRun, "unanswered", counted)
    return calls


def test_a_pass_that_waits_for_its_grant_builds_no_list_and_retries_only_the_silent_once_granted(
        built: list[int]) -> None:
    rig = Rig()
    rig.answer(0, 2)
    for now in (1.0, 2.0, 3.0):
        rig.shards.expire(now)
    assert rig.shards.waiting == [rig.run] and built == []  # no grant yet: only looked again
    rig.shared.set_grant(rig.run.shard_slot, 7, 0, 1)
    rig.shards.expire(4.0)
    assert built == [0] and rig.run.attempt == 1 and rig.run.total == 1
    assert [rig.run.order(i) for i in range(rig.run.total)] == [1]


def test_a_shard_all_answered_ends_without_a_grant(built: list[int]) -> None:
    rig = Rig()
    rig.answer(0, 1, 2)
    rig.shards.expire(1.0)
    assert not rig.shards.waiting and [r.kind for r in rig.records][-1] == R_DONE and built == []


def test_the_first_silent_probe_is_found_from_where_the_last_look_left_off() -> None:
    run = Rig().run
    assert run.any_unanswered() and run.silent_from == 0
    run.states[0] = run.states[1] = 1
    assert run.any_unanswered() and run.silent_from == 2
    run.states[2] = 1
    assert not run.any_unanswered() and not run.any_unanswered()


def test_a_grant_for_another_shard_in_the_slot_is_not_taken(built: list[int]) -> None:
    # The control process looked at the slot while it held another shard, and wrote after the
    # slot passed to this one: that grant is not this shard's.
    rig = Rig()
    for other in ((7, 1), (8, 0)):
        rig.shared.set_grant(rig.run.shard_slot, *other, 5)
        rig.shards.expire(1.0)
        assert rig.shards.waiting == [rig.run] and rig.run.attempt == 0 and built == []
    rig.shared.set_grant(rig.run.shard_slot, 7, 0, 1)
    rig.shards.expire(2.0)
    assert rig.run.attempt == 1


def test_an_ungated_shard_retries_without_a_grant() -> None:
    rig = Rig()
    rig.run.gated = False  # the one-shot command's: no store records its passes
    rig.shards.expire(1.0)
    assert rig.run.attempt == 1 and not rig.shards.waiting


@pytest.mark.parametrize(("attempt", "pos", "counts"), [
    (0, 0, Counts(sent=6, answered=3, retried=3, recovered=3)),  # fresh: its silence was loss
    (0, 2, Counts(sent=6, answered=3)),  # resumed within its first pass
    (1, 0, Counts(sent=6, answered=3)),  # resumed in a new pass from its start
])
def test_a_resumed_shard_counts_what_it_sent_and_heard_but_no_retry_or_recovery(
        attempt: int, pos: int, counts: Counts) -> None:
    # Its states start blank: the probes an earlier life had answered are asked again and would
    # read as lost and recovered (a clean shard resumed at 60 % read an estimated loss of 0.68).
    rig = Rig(retries=attempt + 1, attempt=attempt, pos=pos)
    rig.shared.set_grant(rig.run.shard_slot, 7, 0, attempt + 1)
    rig.shards.expire(1.0)  # nothing heard: the retry pass
    rig.shards.sending.clear()
    rig.run.pos = rig.run.total
    rig.answer(0, 1, 2)
    rig.run.deadline = 0.0
    rig.shards.waiting.append(rig.run)
    rig.shards.expire(2.0)
    done = [r for r in rig.records if r.kind == R_DONE]
    assert len(done) == 1 and coverage.unpack(done[0].opts) == counts
