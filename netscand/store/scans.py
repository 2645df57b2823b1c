"""Scan rows: what was asked, and where the scan stands."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson
from sqlite_utils import Database

from netscand.statuses import FINISHED, STATUSES
from netscand.store import clock
from netscand.store.errors import StoreError

TIMESTAMPS = ("created_at", "started_at", "finished_at", "estimated_completion")
COUNTERS = ("hosts_found", "ports_found")
OPTIONAL_TEXT = ("site_id", "error", "idempotency_key", "owner", "request_digest")
FIELDS = (
    "id", "status", "target", "profile", "site_id", "options", "created_at", "started_at",
    "finished_at", "estimated_completion", "progress_percent", "hosts_found", "ports_found", "error",
    "idempotency_key", "owner", "request_digest", "cve", "coverage",
)
JSON_FIELDS = ("target", "options", "cve", "coverage")
_COLUMNS = ", ".join(FIELDS)


def _defaults() -> dict[str, Any]:
    return {
        "status": "queued", "site_id": None, "options": {}, "created_at": clock.utc_now(), "started_at": None,
        "finished_at": None, "estimated_completion": None, "progress_percent": 0, "hosts_found": 0,
        "ports_found": 0, "error": None, "idempotency_key": None, "owner": None, "request_digest": None,
        "cve": None, "coverage": None,
    }


def create(db: Database, scan: dict[str, Any]) -> dict[str, Any]:
    """Insert a scan; keys left out take their starting values (queued, no progress, created now)."""
    missing = {"id", "target", "profile"} - scan.keys()
    if missing:
        raise ValueError(f"a new scan needs {', '.join(sorted(missing))}")
    row = _defaults() | scan
    _check(row)
    with db.atomic():
        if get(db, row["id"]) is not None:
            raise StoreError(f"scan {row['id']} already exists")
        if row["idempotency_key"] is not None:
            earlier = by_idempotency_key(db, row["owner"], row["idempotency_key"])
            if earlier is not None:
                raise StoreError(f"idempotency key already used by scan {earlier['id']}")
        db.execute(f"INSERT INTO scans ({_COLUMNS}) VALUES ({', '.join('?' * len(FIELDS))})",
                   [_encode(k, row[k]) for k in FIELDS])
    return _get_existing(db, row["id"])


def get(db: Database, scan_id: str) -> dict[str, Any] | None:
    rows = list(db.query(f"SELECT {_COLUMNS} FROM scans WHERE id = ?", [scan_id]))
    return _decode(rows[0]) if rows else None


def by_idempotency_key(db: Database, owner: str | None, key: str) -> dict[str, Any] | None:
    # The ifnull() matches the unique index's expression, so the index answers the lookup.
    rows = list(db.query(
        f"SELECT {_COLUMNS} FROM scans WHERE ifnull(owner, '') = ifnull(?, '') AND idempotency_key = ?",
        [owner, key],
    ))
    return _decode(rows[0]) if rows else None


def update(db: Database, scan_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Change the given keys of a scan; KeyError if there is no such scan."""
    if "id" in fields:
        raise ValueError("a scan's id cannot change")
    _check(fields)
    if fields:
        assignments = ", ".join(f"{k} = ?" for k in fields)
        with db.atomic():
            changed = db.execute(f"UPDATE scans SET {assignments} WHERE id = ?",
                                 [*(_encode(k, v) for k, v in fields.items()), scan_id]).rowcount
        if not changed:
            raise KeyError(scan_id)
    return _get_existing(db, scan_id)


def page(
    db: Database, number: int, per_page: int, status: str | None, site_id: str | None, owner: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """One page of scans, newest first, and how many match; `owner` keeps only that owner's."""
    if number < 1 or per_page < 1:
        raise ValueError(f"page and per_page start at 1, got page={number} per_page={per_page}")
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    where, params = [], []
    for column, value in (("status", status), ("site_id", site_id), ("owner", owner)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    total = next(db.query(f"SELECT count(*) AS n FROM scans {clause}", params))["n"]
    rows = db.query(
        f"SELECT {_COLUMNS} FROM scans {clause} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
        [*params, per_page, (number - 1) * per_page],
    )
    return [_decode(r) for r in rows], total


def finished_before(db: Database, cutoff: str, limit: int) -> list[str]:
    """Ids of finished scans that ended before `cutoff` (a 'Z' timestamp), oldest first."""
    clock.check("cutoff", cutoff)
    return [r["id"] for r in db.query(
        f"SELECT id FROM scans WHERE finished_at < ? AND status IN ({', '.join('?' * len(FINISHED))}) "
        "ORDER BY finished_at LIMIT ?",
        [cutoff, *FINISHED, limit],
    )]


def delete(db: Database, scan_id: str) -> bool:
    """Remove a finished scan's row (and by cascade what is left of its results)."""
    with db.atomic():
        return db.execute(
            f"DELETE FROM scans WHERE id = ? AND status IN ({', '.join('?' * len(FINISHED))})",
            [scan_id, *FINISHED],
        ).rowcount > 0


def counts_by_status(db: Database) -> dict[str, int]:
    """How many scans are in each status; every status is present, most with 0."""
    counts = dict.fromkeys(sorted(STATUSES), 0)
    counts.update({r["status"]: r["n"] for r in db.query("SELECT status, count(*) AS n FROM scans GROUP BY status")})
    return counts


def fail_active(db: Database, reason: str, keep: Collection[str] = ()) -> list[str]:
    """Fail every queued or running scan but those in `keep` (resumed); their devices and ports stay."""
    active = [r["id"] for r in db.query("SELECT id FROM scans WHERE status IN ('queued', 'running')")]
    if not set(active) - set(keep):
        # Nothing to write, so nothing written: a database that has become read-only still
        # serves its scans' results.
        return []
    with db.atomic():
        rows = [r for scan_id in sorted(set(active) - set(keep)) for r in db.query(
            "UPDATE scans SET status = 'failed', error = ?, finished_at = ?, estimated_completion = NULL "
            "WHERE id = ? AND status IN ('queued', 'running') RETURNING id, created_at",
            [reason, clock.utc_now(), scan_id],
        )]
    return [r["id"] for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]))]


def _get_existing(db: Database, scan_id: str) -> dict[str, Any]:
    scan = get(db, scan_id)
    if scan is None:
        raise KeyError(scan_id)
    return scan


def _check(fields: dict[str, Any]) -> None:
    """Refuse what the API layer should never pass, so a bug shows here and not in a stored row."""
    unknown = fields.keys() - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown scan field(s): {', '.join(sorted(unknown))}")
    for key, value in fields.items():
        if key in TIMESTAMPS:
            clock.check(key, value)
        elif key == "status" and value not in STATUSES:
            raise ValueError(f"unknown status {value!r}")
        elif key == "progress_percent" and not (_is_int(value) and 0 <= value <= 100):
            raise ValueError(f"progress_percent must be an integer 0-100, got {value!r}")
        elif key in COUNTERS and not (_is_int(value) and value >= 0):
            raise ValueError(f"{key} must be a non-negative integer, got {value!r}")
        elif key in ("id", "profile") and not (isinstance(value, str) and value):
            raise ValueError(f"{key} must be a non-empty string, got {value!r}")
        elif key in OPTIONAL_TEXT and value is not None and not isinstance(value, str):
            raise ValueError(f"{key} must be a string or None, got {value!r}")
        elif key == "target" and not (
            isinstance(value, str) or (isinstance(value, list) and all(isinstance(t, str) for t in value))
        ):
            raise ValueError(f"target must be a string or a list of strings, got {value!r}")
        elif key == "options" and not isinstance(value, dict):
            raise ValueError(f"options must be a dict, got {value!r}")
        elif key == "cve" and value is not None and not isinstance(value, dict):
            raise ValueError(f"cve must be a dict or None, got {value!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _encode(key: str, value: Any) -> Any:
    return orjson.dumps(value).decode() if key in JSON_FIELDS else value


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for key in JSON_FIELDS:
        # A scan from before migration m003 has NULL, not JSON, in `cve` (m009: in `coverage`).
        row[key] = None if row[key] is None else orjson.loads(row[key])
    return row
