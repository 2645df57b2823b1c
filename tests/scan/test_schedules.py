"""The scheduler driven by an injected clock over a real SQLite store and the real admission
(policy, idempotency, each owner's queue places): a due time on time, due times missed while the
daemon was down (run once, or skip; the latest on time or not), refusals, disabled schedules, a
year missed at the cost of one minute, and a start made again after a crash."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from netscand.scan.admission import Admission, Claims
from netscand.scan.limits import CurrentLimits
from netscand.scan.events import Events
from netscand.scan.profiles import ScanRequest
from netscand.scan.schedules import CONCURRENT, GRACE, MISSED_COUNTED, Scheduler
from netscand.store import Store
from netscand.store import schedules as stored
from netscand.store.errors import StoreError
from netscand.store.threads import StoreThreads
from tests.scan.test_admission import limits, policy

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Harness:
    store: Store
    admission: Admission
    clock: Clock
    scheduler: Scheduler
    keys: list[str] = field(default_factory=list)

    def add(self, cron: str = "* * * * *", next_due: datetime = T0, *, missed: str = "run_once",
            deliver: str = "all", enabled: bool = True, owner: str = "alice", **request: Any) -> str:
        """A stored schedule, as the API stores one (its request validated)."""
        req = ScanRequest(**{"target": "198.18.1.0/29", "profile": "quick", **request})
        schedule_id = str(uuid.uuid4())
        self.store.call("test", stored.create, {
            "id": schedule_id, "name": "test", "cron": cron, "request": asdict(req), "missed": missed,
            "deliver": deliver, "enabled": enabled, "owner": owner, "remote": False,
            "created_at": "2026-03-01T00:00:00Z", "updated_at": "2026-03-01T00:00:00Z",
            "next_due": _z(next_due) if enabled else None, "last_due": None})
        return schedule_id

    def tick(self, at: datetime) -> None:
        self.clock.now = at
        asyncio.run(self.scheduler.tick())

    def back(self, at: datetime) -> None:
        """The daemon back at `at` (its scheduler started then), and its first tick."""
        self.clock.now = at
        self.scheduler = Scheduler(self.store, StoreThreads(), self.scheduler.start, self.clock, self.scheduler.sleep)
        self.tick(at)

    def schedule(self, schedule_id: str) -> dict[str, Any]:
        found = self.store.call("test", stored.get, schedule_id)
        assert found is not None
        return found

    def runs(self, schedule_id: str) -> list[dict[str, Any]]:
        return self.store.call("test", stored.runs, schedule_id, 100)

    def scans(self) -> int:
        return self.store.scan_counts().get("queued", 0)


def _z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    store = Store(tmp_path / "netscand.db")
    io = StoreThreads()
    admission = Admission(store, io, Claims(), CurrentLimits(limits()), Events(store, io))
    clock = Clock(T0)
    keys: list[str] = []

    async def start(req: ScanRequest, owner: str | None, key: str | None, remote: bool = False,
                    only_changes: bool = False) -> tuple[dict, bool]:
        keys.append(key or "")
        row, queued = await admission.admit(req, owner, key, remote, only_changes)
        return row, queued is not None

    async def never(seconds: float) -> None:
        raise AssertionError("tick() does not sleep")

    yield Harness(store, admission, clock, Scheduler(store, StoreThreads(), start, clock, never), keys)
    store.close()


def test_a_due_time_on_time_starts_its_scan_and_records_it(harness: Harness) -> None:
    sid = harness.add(deliver="changes")
    harness.tick(T0 - timedelta(seconds=1))
    assert harness.scans() == 0 and harness.runs(sid) == []  # not yet due
    harness.tick(T0 + timedelta(seconds=0.4))
    (run,) = harness.runs(sid)
    assert (run["due_at"], run["outcome"], run["missed"], run["detail"]) == ("2026-03-02T10:00:00Z", "started", 0, None)
    scan = harness.store.get_scan(run["scan_id"])
    assert scan is not None and scan["owner"] == "alice" and scan["idempotency_key"] == f"schedule:{sid}:2026-03-02T10:00:00Z"
    schedule = harness.schedule(sid)
    assert (schedule["next_due"], schedule["last_due"]) == ("2026-03-02T10:01:00Z", "2026-03-02T10:00:00Z")
    # The webhooks' question of the scan: its schedule delivers only changes, written with the scan.
    assert harness.store.call("test", stored.delivers_only_changes, run["scan_id"])
    harness.tick(T0 + timedelta(seconds=30))
    assert len(harness.runs(sid)) == 1 and harness.scans() == 1  # handled once


def test_a_due_time_late_within_the_grace_is_on_time(harness: Harness) -> None:
    sid = harness.add("0 * * * *")
    harness.tick(T0 + GRACE)
    assert [r["outcome"] for r in harness.runs(sid)] == ["started"]


def test_a_schedule_delivering_everything_is_not_changes_only(harness: Harness) -> None:
    sid = harness.add()
    harness.tick(T0)
    (run,) = harness.runs(sid)
    assert not harness.store.call("test", stored.delivers_only_changes, run["scan_id"])


def test_missed_while_down_run_once_starts_one_scan_for_them_all(harness: Harness) -> None:
    sid = harness.add("0 * * * *", missed="run_once")  # hourly, due 10:00; back at 13:20
    harness.back(T0 + timedelta(hours=3, minutes=20))
    (run,) = harness.runs(sid)
    assert (run["due_at"], run["outcome"], run["missed"]) == ("2026-03-02T13:00:00Z", "run_missed", 4)
    assert run["detail"] == ("4 due times missed while the daemon was down "
                             "(2026-03-02T10:00:00Z to 2026-03-02T13:00:00Z): run once now")
    assert run["scan_id"] is not None and harness.scans() == 1
    assert harness.keys == [f"schedule:{sid}:2026-03-02T13:00:00Z"]
    assert harness.schedule(sid)["next_due"] == "2026-03-02T14:00:00Z"


def test_missed_while_down_run_once_with_the_latest_on_time_is_one_scan(harness: Harness) -> None:
    sid = harness.add()  # every minute, due 10:00; back at 10:04:10, 10:04 on time
    harness.back(T0 + timedelta(minutes=4, seconds=10))
    (run,) = harness.runs(sid)
    assert (run["due_at"], run["outcome"], run["missed"]) == ("2026-03-02T10:04:00Z", "run_missed", 4)
    assert harness.scans() == 1 and harness.schedule(sid)["next_due"] == "2026-03-02T10:05:00Z"


def test_missed_while_down_skip_starts_nothing_and_records_one_row(harness: Harness) -> None:
    sid = harness.add("0 * * * *", missed="skip")
    harness.back(T0 + timedelta(hours=3, minutes=20))
    (run,) = harness.runs(sid)
    assert (run["due_at"], run["outcome"], run["missed"], run["scan_id"]) == \
        ("2026-03-02T13:00:00Z", "skipped_missed", 4, None)
    assert run["detail"].endswith(": skipped") and harness.scans() == 0
    assert harness.schedule(sid)["next_due"] == "2026-03-02T14:00:00Z"


def test_skip_still_starts_the_due_time_that_is_on_time(harness: Harness) -> None:
    sid = harness.add(missed="skip")
    harness.back(T0 + timedelta(minutes=4, seconds=10))
    started, skipped = harness.runs(sid)
    assert (started["due_at"], started["outcome"], started["missed"]) == ("2026-03-02T10:04:00Z", "started", 0)
    assert (skipped["due_at"], skipped["outcome"], skipped["missed"]) == ("2026-03-02T10:03:00Z", "skipped_missed", 4)
    assert skipped["detail"] == ("4 due times missed while the daemon was down "
                                 "(2026-03-02T10:00:00Z to 2026-03-02T10:03:00Z): skipped")
    assert harness.scans() == 1


def test_one_missed_due_time_is_said_so(harness: Harness) -> None:
    sid = harness.add("0 * * * *", missed="skip")
    harness.back(T0 + GRACE + timedelta(seconds=1))
    (run,) = harness.runs(sid)
    assert run["outcome"] == "skipped_missed" and run["missed"] == 1
    assert "1 due time missed while the daemon was down (2026-03-02T10:00:00Z): skipped" == run["detail"]
    assert harness.scans() == 0 and harness.schedule(sid)["next_due"] == "2026-03-02T11:00:00Z"


@pytest.mark.parametrize("missed", ["run_once", "skip"])
def test_a_year_missed_every_minute_costs_what_a_minute_does(harness: Harness, missed: str) -> None:
    sid = harness.add(missed=missed)
    began = time.perf_counter()
    harness.back(T0 + timedelta(days=365, seconds=90))  # 10:01 on time, every minute before missed
    assert time.perf_counter() - began < 1.0
    *started, run = harness.runs(sid)
    assert [r["outcome"] for r in started] == ([] if missed == "run_once" else ["started"])
    assert run["missed"] == MISSED_COUNTED and f"{MISSED_COUNTED} or more due times missed" in run["detail"]
    assert "(2026-03-02T10:00:00Z to 2027-03-02T10:00:00Z)" in run["detail"] and harness.scans() == 1
    assert harness.schedule(sid)["next_due"] == "2027-03-02T10:02:00Z"


def test_a_start_the_policy_refuses_is_recorded_and_the_schedule_goes_on(harness: Harness) -> None:
    sid = harness.add(target="198.18.1.0/29")
    # The policy narrowed since the schedule was made (a reload).
    harness.admission.limits.now = replace(limits(), policy=policy(allowed_targets=["198.18.2.0/24"]))
    harness.tick(T0)
    (run,) = harness.runs(sid)
    assert run["outcome"] == "refused" and run["scan_id"] is None and "198.18.1.0" in run["detail"]
    assert harness.scans() == 0 and harness.schedule(sid)["next_due"] == "2026-03-02T10:01:00Z"


def test_a_full_queue_refuses_the_start_with_its_reason(harness: Harness) -> None:
    sids = [harness.add() for _ in range(3)]  # the owner has 2 places in the queue
    harness.tick(T0)
    outcomes = sorted(harness.runs(sid)[0]["outcome"] for sid in sids)
    assert outcomes == ["refused", "started", "started"] and harness.scans() == 2
    (refused,) = [harness.runs(sid)[0] for sid in sids if harness.runs(sid)[0]["outcome"] == "refused"]
    assert "already has 2 scans queued" in refused["detail"]


def test_a_refused_missed_run_keeps_what_was_missed(harness: Harness) -> None:
    harness.admission.limits.now = replace(limits(), policy=policy(allowed_targets=["198.18.2.0/24"]))
    sid = harness.add("0 * * * *")
    harness.back(T0 + timedelta(hours=2, minutes=5))
    (run,) = harness.runs(sid)
    assert run["outcome"] == "refused" and run["missed"] == 3
    assert run["detail"].startswith("3 due times missed while the daemon was down") and ", but it was refused: " in run["detail"]


def test_a_disabled_schedule_is_never_due(harness: Harness) -> None:
    sid = harness.add(enabled=False)
    harness.tick(T0 + timedelta(hours=5))
    assert harness.runs(sid) == [] and harness.scans() == 0


def test_a_start_made_again_after_a_crash_is_the_same_scan(harness: Harness) -> None:
    sid = harness.add()
    # The daemon started 10:00's scan and stopped before recording it: the key is used, no run.
    first, _ = asyncio.run(harness.admission.admit(
        ScanRequest(**harness.schedule(sid)["request"]), "alice", f"schedule:{sid}:2026-03-02T10:00:00Z", False))
    harness.tick(T0 + timedelta(seconds=20))
    (run,) = harness.runs(sid)
    assert run["outcome"] == "started" and run["scan_id"] == first["id"] and harness.scans() == 1


def test_a_schedule_changed_while_its_scan_started_keeps_the_change(harness: Harness) -> None:
    sid = harness.add()
    # PATCHed to another cron (and its next due time) meanwhile: the run is recorded, the
    # next due time the change set stays.
    harness.store.call("test", stored.update, sid, {"cron": "30 * * * *", "next_due": "2026-03-02T10:30:00Z"})
    run = {"due_at": "2026-03-02T10:00:00Z", "outcome": "started", "scan_id": None, "missed": 0, "detail": None,
           "at": "2026-03-02T10:00:00Z"}
    assert harness.store.call("test", stored.record, sid, "* * * * *", [run], "2026-03-02T10:01:00Z")
    assert harness.schedule(sid)["next_due"] == "2026-03-02T10:30:00Z" and len(harness.runs(sid)) == 1
    harness.store.call("test", stored.delete, sid)
    assert not harness.store.call("test", stored.record, sid, "* * * * *", [run], "2026-03-02T10:01:00Z")


def test_runs_kept_are_bounded(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stored, "KEEP_RUNS", 3)
    sid = harness.add()
    for minute in range(5):
        harness.tick(T0 + timedelta(minutes=minute))
    assert [r["due_at"][11:16] for r in harness.runs(sid)] == ["10:04", "10:03", "10:02"]


async def settle(scheduler: Scheduler, blocked: Callable[[], int] = lambda: 0) -> None:
    """Until every tick but the blocked ones is done: the fake clock moves only then."""
    while len(scheduler.ticks) > blocked():
        await asyncio.sleep(0.001)


def test_run_forever_starts_each_minute_as_its_clock_goes(tmp_path: Path) -> None:
    store = Store(tmp_path / "netscand.db")
    clock = Clock(T0 - timedelta(seconds=5))
    started: list[str] = []
    ticks = 0

    async def start(req: ScanRequest, owner: str | None, key: str | None, **_: Any) -> tuple[dict, bool]:
        started.append(key or "")
        return {"id": str(uuid.uuid4())}, True

    async def sleep(seconds: float) -> None:
        nonlocal ticks
        await settle(scheduler)
        ticks += 1
        clock.now += timedelta(seconds=seconds)
        if clock.now > T0 + timedelta(minutes=2, seconds=30):
            raise asyncio.CancelledError

    scheduler = Scheduler(store, StoreThreads(), start, clock, sleep)
    h = Harness(store, None, clock, scheduler)  # type: ignore[arg-type]
    sid = h.add()
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(scheduler.run_forever())
    assert [k.rsplit(":", 3)[1:] for k in started] == [["2026-03-02T10", "00", "00Z"], ["2026-03-02T10", "01", "00Z"],
                                                       ["2026-03-02T10", "02", "00Z"]]
    assert [r["outcome"] for r in h.runs(sid)] == ["started"] * 3 and ticks > 150
    store.close()


def test_one_slow_start_holds_up_no_other_schedule(tmp_path: Path) -> None:
    store = Store(tmp_path / "netscand.db")
    clock = Clock(T0 - timedelta(seconds=5))
    started: dict[str, datetime] = {}
    blocked = 0

    async def start(req: ScanRequest, owner: str | None, key: str | None, **_: Any) -> tuple[dict, bool]:
        nonlocal blocked
        if req.target == "198.18.1.1":  # the slow one: its start takes two and a half minutes
            blocked += 1
            async with asyncio.timeout(10):  # a scheduler that waits for it never moves the clock
                while clock.now < T0 + timedelta(minutes=2, seconds=30):
                    await asyncio.sleep(0.001)
            blocked -= 1
        started[req.target] = clock.now
        return {"id": str(uuid.uuid4())}, True

    async def sleep(seconds: float) -> None:
        await settle(scheduler, lambda: blocked)
        clock.now += timedelta(seconds=seconds)
        if clock.now > T0 + timedelta(minutes=3):
            raise asyncio.CancelledError

    scheduler = Scheduler(store, StoreThreads(), start, clock, sleep)
    h = Harness(store, None, clock, scheduler)  # type: ignore[arg-type]
    slow = h.add("0 * * * *", target="198.18.1.1", missed="skip")
    others = [h.add("1 * * * *", next_due=T0 + timedelta(minutes=1), target=f"198.18.1.{n}", missed="skip")
              for n in range(2, 2 + CONCURRENT)]  # due while the slow one is still starting
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(scheduler.run_forever())
    assert started["198.18.1.1"] >= T0 + timedelta(minutes=2, seconds=30)
    assert all(started[f"198.18.1.{n}"] <= T0 + timedelta(minutes=1, seconds=2) for n in range(2, 2 + CONCURRENT))
    assert [(r["outcome"], r["detail"]) for sid in [slow, *others] for r in h.runs(sid)] == [("started", None)] * 5
    store.close()


def test_a_due_time_late_while_the_daemon_was_up_runs_late(harness: Harness) -> None:
    sid = harness.add("0 * * * *", missed="skip")  # the scheduler started at T0, with the schedule due
    harness.tick(T0 + timedelta(minutes=5))  # five minutes late (a busy daemon): not missed
    (run,) = harness.runs(sid)
    assert (run["due_at"], run["outcome"], run["missed"]) == ("2026-03-02T10:00:00Z", "started", 0)
    assert run["detail"] == "started 300 s late: the scheduler was busy" and harness.scans() == 1


def test_only_due_times_before_the_start_were_missed_while_down(harness: Harness) -> None:
    sid = harness.add(next_due=T0 - timedelta(minutes=2), missed="skip")  # 09:58 and 09:59 before the start
    harness.tick(T0 + timedelta(minutes=3))
    started, skipped = harness.runs(sid)
    assert (skipped["due_at"], skipped["outcome"], skipped["missed"]) == ("2026-03-02T09:59:00Z", "skipped_missed", 2)
    assert (started["due_at"], started["outcome"]) == ("2026-03-02T10:03:00Z", "started") and harness.scans() == 1


def test_a_start_that_fails_is_recorded_refused_once_and_the_schedule_goes_on(harness: Harness) -> None:
    async def failing(req: ScanRequest, owner: str | None, key: str | None, **_: Any) -> tuple[dict, bool]:
        raise RuntimeError("a bug")

    real, harness.scheduler.start = harness.scheduler.start, failing
    sid = harness.add()
    harness.tick(T0)
    harness.tick(T0 + timedelta(seconds=1))  # not tried again
    (run,) = harness.runs(sid)
    assert (run["outcome"], run["scan_id"], run["detail"]) == ("refused", None, "the scan could not be started: a bug")
    harness.scheduler.start = real
    harness.tick(T0 + timedelta(minutes=1))
    assert [r["outcome"] for r in harness.runs(sid)] == ["started", "refused"]


def test_a_schedule_that_cannot_be_recorded_backs_off(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any) -> bool:
        raise StoreError("disk I/O error")

    sid = harness.add()
    monkeypatch.setattr(stored, "record", broken)
    with capture_logs() as logs:
        for second in range(20):
            harness.tick(T0 + timedelta(seconds=second))
    failed = [e for e in logs if e["event"] == "schedule.failed"]
    assert [e["retry_in_s"] for e in failed] == [2.0, 4.0, 8.0, 16.0]  # tried at 0, 2, 6 and 14 s
    assert len(harness.keys) == 4 and harness.scans() == 1  # the one scan, by its idempotency key
    monkeypatch.undo()
    harness.tick(T0 + timedelta(seconds=30))
    assert [r["outcome"] for r in harness.runs(sid)] == ["started"]


def test_changes_only_is_the_scans_own_and_outlives_its_schedule(harness: Harness,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stored, "KEEP_RUNS", 1)
    sid = harness.add(deliver="changes")
    harness.tick(T0)
    (first,) = harness.runs(sid)
    harness.tick(T0 + timedelta(minutes=1))  # the first run trimmed
    assert [r["due_at"][11:16] for r in harness.runs(sid)] == ["10:01"]
    harness.store.call("test", stored.delete, sid)  # and every run gone with the schedule
    assert harness.store.call("test", stored.delivers_only_changes, first["scan_id"])
    # Written with the scan's insert: no run row was ever needed.
    row, _ = asyncio.run(harness.admission.admit(ScanRequest("198.18.1.9", "quick"), "bob", None, False, True))
    assert harness.store.call("test", stored.delivers_only_changes, row["id"])
