"""Schedules: a cron expression and the start request it runs, and what each due time became.

The scheduler (scan/schedules.py) decides; this only keeps. A run is recorded together with the
schedule's next due time, in one transaction, so a due time is either handled and recorded, or
still due when the daemon comes back.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlite_utils import Database

FIELDS = ("id", "name", "cron", "request", "missed", "deliver", "enabled", "owner", "remote",
          "created_at", "updated_at", "next_due", "last_due")
RUN_FIELDS = ("due_at", "outcome", "scan_id", "missed", "detail", "at")
BOOLEANS = ("enabled", "remote")
# Runs kept per schedule: a schedule every minute would otherwise add half a million a year.
# Newest first, these outlast any scan they started that is still running.
KEEP_RUNS = 1000
_COLUMNS = ", ".join(FIELDS)


def create(db: Database, schedule: dict[str, Any]) -> dict[str, Any]:
    """Insert a schedule (every field of FIELDS); it as stored."""
    db.execute(f"INSERT INTO schedules ({_COLUMNS}) VALUES ({', '.join('?' * len(FIELDS))})",
               [_encode(k, schedule[k]) for k in FIELDS])
    found = get(db, schedule["id"])
    assert found is not None
    return found


def get(db: Database, schedule_id: str) -> dict[str, Any] | None:
    rows = list(db.query(f"SELECT {_COLUMNS} FROM schedules WHERE id = ?", [schedule_id]))
    return _decode(rows[0]) if rows else None


def page(db: Database, number: int, per_page: int, owner: str | None) -> tuple[list[dict[str, Any]], int]:
    """One page of schedules, newest first, and how many there are; `owner`'s only, if given."""
    clause, params = ("WHERE owner = ?", [owner]) if owner is not None else ("", [])
    total = next(db.query(f"SELECT count(*) AS n FROM schedules {clause}", params))["n"]
    rows = db.query(f"SELECT {_COLUMNS} FROM schedules {clause} ORDER BY created_at DESC, id DESC "
                    "LIMIT ? OFFSET ?", [*params, per_page, (number - 1) * per_page])
    return [_decode(r) for r in rows], total


def update(db: Database, schedule_id: str, fields: dict[str, Any]) -> dict[str, Any] | None:
    """Change the given fields; the schedule as stored, None if there is no such schedule."""
    assignments = ", ".join(f"{k} = ?" for k in fields)
    with db.atomic():
        db.execute(f"UPDATE schedules SET {assignments} WHERE id = ?",
                   [*(_encode(k, v) for k, v in fields.items()), schedule_id])
    return get(db, schedule_id)


def delete(db: Database, schedule_id: str) -> bool:
    """Delete a schedule and its runs (its scans stay); False if there is no such schedule."""
    with db.atomic():
        return db.execute("DELETE FROM schedules WHERE id = ?", [schedule_id]).rowcount > 0


def due(db: Database, now: str) -> list[dict[str, Any]]:
    """The enabled schedules due at `now` (a 'Z' timestamp), the longest due first."""
    rows = db.query(f"SELECT {_COLUMNS} FROM schedules WHERE enabled = 1 AND next_due <= ? "
                    "ORDER BY next_due, id", [now])
    return [_decode(r) for r in rows]


def record(db: Database, schedule_id: str, cron: str, runs: list[dict[str, Any]], next_due: str) -> bool:
    """Record what due times became (RUN_FIELDS each) and the schedule's next due time, in one
    transaction; False if the schedule is gone. A schedule disabled or given another cron
    meanwhile keeps the next due time its change set."""
    with db.atomic():
        if get(db, schedule_id) is None:
            return False
        for run in runs:
            # REPLACE: a due time handled again after a crash (the same scan, by its idempotency key).
            db.execute(f"INSERT OR REPLACE INTO schedule_runs (schedule_id, {', '.join(RUN_FIELDS)}) "
                       f"VALUES (?, {', '.join('?' * len(RUN_FIELDS))})",
                       [schedule_id, *(run[k] for k in RUN_FIELDS)])
        db.execute("UPDATE schedules SET last_due = ?, "
                   "next_due = CASE WHEN cron = ? AND enabled = 1 THEN ? ELSE next_due END WHERE id = ?",
                   [max(r["due_at"] for r in runs), cron, next_due, schedule_id])
        db.execute("DELETE FROM schedule_runs WHERE schedule_id = ? AND due_at < "
                   "(SELECT due_at FROM schedule_runs WHERE schedule_id = ? ORDER BY due_at DESC "
                   "LIMIT 1 OFFSET ?)", [schedule_id, schedule_id, KEEP_RUNS - 1])
    return True


def runs(db: Database, schedule_id: str, limit: int) -> list[dict[str, Any]]:
    """A schedule's latest `limit` runs, newest first."""
    return list(db.query(f"SELECT {', '.join(RUN_FIELDS)} FROM schedule_runs WHERE schedule_id = ? "
                         "ORDER BY due_at DESC LIMIT ?", [schedule_id, limit]))


def delivers_only_changes(db: Database, scan_id: str) -> bool:
    """Whether the scan was started by a schedule that delivers only its changes (its webhooks
    get its change events and its end, not its progress, hosts and ports). Read from the scan's
    own row, written with it (scan/admission.py): its schedule's runs are trimmed and go with it."""
    rows = db.query("SELECT 1 FROM scans WHERE id = ? AND json_extract(options, '$.deliver') = 'changes'", [scan_id])
    return next(iter(rows), None) is not None


def _encode(key: str, value: Any) -> Any:
    if key == "request":
        return orjson.dumps(value).decode()
    return int(value) if key in BOOLEANS else value


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    return row | {"request": orjson.loads(row["request"]), **{k: bool(row[k]) for k in BOOLEANS}}
