"""The scheduler: starts each enabled schedule's scan when its cron expression comes due, and
decides what becomes of the due times missed while the daemon was down.

Every tick (a task of its own each second) takes the schedules due by now, a few at a time, so
one slow start holds up no other schedule. A due time since the scheduler started is never
missed: late (the daemon was busy), it still starts, its run saying how late. One before it, and
more than GRACE ago, was missed while the daemon was down: with `missed: run_once` one scan
starts now for all of them, with `skip` none does; either way ONE row records them, with how
many there were, so a schedule every minute that missed a year costs what one missed minute
does. A refusal (the policy, a full queue, a deleted site, a start that failed) is recorded with
its reason. Then the schedule's next due time is the cron's first after now. A schedule that
cannot even be recorded is tried again later and later (BACKOFF_S), not every second.

A scan is started with the Idempotency-Key `schedule:<id>:<due time>`: a daemon that stopped
between starting it and recording it starts nothing twice when it handles that due time again.

The clock and the sleep are injected, so tests drive every branch without waiting. Store calls go
through the store's threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from croniter import CroniterBadDateError, croniter

from netscand.scan.errors import ScanError
from netscand.scan.profiles import ScanRequest
from netscand.scan.schedule_choices import DELIVERIES, MISSED_POLICIES  # noqa: F401 -- api/models.py reads them here
from netscand.store import Store
from netscand.store import schedules as stored
from netscand.store.threads import StoreThreads

log = structlog.get_logger()

GRACE = timedelta(seconds=60)  # a due time this late is on time: the daemon was busy, not down
TICK_S = 1.0  # cron times are whole minutes: a tick a second starts a scan within a second of one
CONCURRENT = 4  # due schedules handled at once, over every tick: a slow start holds up one place
BACKOFF_S = (2.0, 300.0)  # one that cannot be handled or recorded: tried again after 2 s, doubling to 5 min
MISSED_COUNTED = 100  # missed due times counted one by one up to this many; more read "at least"
CRON_FIELDS = "minute hour day-of-month month day-of-week"
RUN_OUTCOMES = ("started", "run_missed", "skipped_missed", "refused")

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]
Start = Callable[..., Awaitable[tuple[dict, bool]]]  # Orchestrator.start


def utc_now() -> datetime:
    return datetime.now(UTC)


def stamp(moment: datetime) -> str:
    """A moment as the API and the store write times: UTC, to the second, with 'Z'."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cron_error(cron: str) -> str | None:
    """Why `cron` is not a five-field cron expression that comes due, in plain words; None if it is."""
    count = len(cron.split())
    if count != 5:
        return f"cron needs five fields ({CRON_FIELDS}), not {count}: {cron!r}"
    try:
        croniter(cron, utc_now()).get_next(datetime)
    except CroniterBadDateError:
        return f"cron {cron!r} never comes due: no date matches all its fields"
    except ValueError as exc:  # croniter's CroniterError is one, with its reason after the expression
        reason = str(exc).rpartition("]")[2].strip().removeprefix("is not acceptable").strip(" ,.")
        return f"cron {cron!r} is not valid ({CRON_FIELDS}): {reason or 'a field is not one cron takes'}"
    return None


def next_due(cron: str, after: datetime) -> datetime:
    """The cron's first time after `after` (in UTC)."""
    return croniter(cron, after.astimezone(UTC)).get_next(datetime)


@dataclass(frozen=True)
class Decision:
    """What a due schedule's tick does: the runs it records, the one that starts a scan (if any)
    and the next due time."""

    runs: list[dict[str, Any]]
    start: dict[str, Any] | None
    next_due: datetime


def decide(cron: str, missed: str, due: datetime, now: datetime, started: datetime) -> Decision:
    """What becomes of a schedule due since `due` (one of its cron times) at `now`, for a scheduler
    that started at `started`. O(1) in how long it was missed: the latest due time is found from
    now, not by stepping from `due`."""
    now = now.astimezone(UTC).replace(microsecond=0)
    latest = croniter(cron, now + timedelta(seconds=1)).get_prev(datetime)  # at or before now
    on_time = latest >= started or now - latest <= GRACE  # late while up: run late, never "missed"
    before_start = croniter(cron, started).get_prev(datetime)
    last_missed = min(croniter(cron, latest).get_prev(datetime), before_start) if on_time else latest
    at = stamp(now)
    after = next_due(cron, now)
    if due > last_missed:  # nothing missed while the daemon was down
        late = int((now - latest).total_seconds())
        detail = f"started {late} s late: the scheduler was busy" if late > GRACE.total_seconds() else None
        return Decision([], _run(latest, "started", at, detail=detail), after)
    count, more = _count(cron, due, last_missed)
    span = (f"{count}{' or more' if more else ''} due time{'s' if count > 1 else ''} missed while the "
            f"daemon was down ({stamp(due)}" + (f" to {stamp(last_missed)})" if count > 1 else ")"))
    if missed == "run_once":
        return Decision([], _run(latest, "run_missed", at, count, f"{span}: run once now"), after)
    skipped = _run(last_missed, "skipped_missed", at, count, f"{span}: skipped")
    return Decision([skipped], _run(latest, "started", at) if on_time else None, after)


def _count(cron: str, first: datetime, last: datetime) -> tuple[int, bool]:
    """The cron times from `first` to `last` (both among them), up to MISSED_COUNTED; and
    whether there are more."""
    times = croniter(cron, first)
    count, moment = 1, first
    while moment < last and count < MISSED_COUNTED:
        moment = times.get_next(datetime)
        count += 1
    return count, moment < last


def _run(due: datetime, outcome: str, at: str, missed: int = 0, detail: str | None = None) -> dict[str, Any]:
    return {"due_at": stamp(due), "outcome": outcome, "scan_id": None, "missed": missed, "detail": detail,
            "at": at}


class Scheduler:
    def __init__(self, store: Store, io: StoreThreads, start: Start, clock: Clock = utc_now,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.store, self.io, self.start = store, io, start
        self.clock, self.sleep = clock, sleep
        self.started = clock()  # due times before this were missed while the daemon was down; later, late
        self.ticks: set[asyncio.Task] = set()
        self.handling: set[str] = set()  # schedules whose due time a tick is handling
        self.backoff: dict[str, tuple[datetime, float]] = {}  # failing schedules: not before, and the delay

    def next_due(self, cron: str) -> str:
        """The cron's first time after now, as stored: a new or re-enabled schedule's next due time."""
        return stamp(next_due(cron, self.clock()))

    async def run_forever(self) -> None:
        try:
            while True:
                # Each tick a task: a slow start holds up its own schedule, never the next tick's.
                tick = asyncio.create_task(_logged(self.tick()))
                self.ticks.add(tick)
                tick.add_done_callback(self.ticks.discard)
                await self.sleep(TICK_S)
        finally:
            for tick in self.ticks:
                tick.cancel()

    async def tick(self) -> None:
        """Handle the schedules due by now that no other tick is handling, at most CONCURRENT at once
        (the rest wait for a next tick)."""
        now = self.clock()
        due = await self.io.read(self.store.call, "cannot read the due schedules", stored.due, stamp(now))
        self.backoff = {s["id"]: self.backoff[s["id"]] for s in due if s["id"] in self.backoff}
        ready = [s for s in due if s["id"] not in self.handling and self._may_try(s["id"], now)]
        mine = ready[:max(0, CONCURRENT - len(self.handling))]
        self.handling.update(s["id"] for s in mine)
        await asyncio.gather(*(self._handle_one(s, now) for s in mine))

    def _may_try(self, schedule_id: str, now: datetime) -> bool:
        return schedule_id not in self.backoff or self.backoff[schedule_id][0] <= now

    async def _handle_one(self, schedule: dict[str, Any], now: datetime) -> None:
        sid = schedule["id"]
        try:
            await self._handle(schedule, now)
            self.backoff.pop(sid, None)
        except Exception:  # noqa: BLE001 -- a store error or a bug in one must not hold up the others
            # Its due time stays unrecorded: tried again, but not every second with a traceback each.
            delay = min(self.backoff[sid][1] * 2, BACKOFF_S[1]) if sid in self.backoff else BACKOFF_S[0]
            self.backoff[sid] = (self.clock() + timedelta(seconds=delay), delay)
            log.exception("schedule.failed", schedule_id=sid, retry_in_s=delay)
        finally:
            self.handling.discard(sid)

    async def _handle(self, schedule: dict[str, Any], now: datetime) -> None:
        decision = decide(schedule["cron"], schedule["missed"], datetime.fromisoformat(schedule["next_due"]), now,
                          self.started)
        runs = decision.runs + ([await self._start(schedule, decision.start)] if decision.start else [])
        for run in decision.runs:
            log.info("schedule.skipped", schedule_id=schedule["id"], due_at=run["due_at"], missed=run["missed"])
        await self.io.write(self.store.call, f"cannot record the run of schedule {schedule['id']}",
                            stored.record, schedule["id"], schedule["cron"], runs, stamp(decision.next_due))

    async def _start(self, schedule: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
        """Start the due time's scan: the run with its scan, or refused with the reason."""
        key = f"schedule:{schedule['id']}:{run['due_at']}"
        try:
            status, _ = await self.start(ScanRequest(**schedule["request"]), schedule["owner"], key,
                                         remote=schedule["remote"], only_changes=schedule["deliver"] == "changes")
        except ScanError as exc:
            log.warning("schedule.refused", schedule_id=schedule["id"], due_at=run["due_at"], reason=exc.detail)
            return _refused(run, exc.detail)
        except Exception as exc:  # noqa: BLE001 -- a bug or a store error: recorded once, then the next due time
            log.exception("schedule.start_failed", schedule_id=schedule["id"], due_at=run["due_at"])
            return _refused(run, f"the scan could not be started: {exc}")
        log.info("schedule.started", schedule_id=schedule["id"], due_at=run["due_at"], scan_id=status["id"],
                 outcome=run["outcome"], detail=run["detail"])
        return run | {"scan_id": status["id"]}


async def _logged(tick: Awaitable[None]) -> None:
    try:
        await tick
    except Exception:  # noqa: BLE001 -- one bad tick must not end every schedule for the daemon's life
        log.exception("schedule.tick_failed")


def _refused(run: dict[str, Any], reason: str) -> dict[str, Any]:
    why = reason if run["detail"] is None else f"{run['detail']}, but it was refused: {reason}"
    return run | {"outcome": "refused", "scan_id": None, "detail": why}
