"""Events: what happened, in the order it was written, each numbered by `seq` (the id a
Server-Sent Events client resumes from with Last-Event-ID, and a webhook's cursor).

An event is written in the same transaction as what it tells of where there is one (a change
with the inventory it changed), so a reader never sees one without the other.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson
from sqlite_utils import Database

from netscand.store import clock, scans, sites

COLUMNS = ("seq", "type", "scan_id", "site_id", "owner", "at", "data")
_COLUMNS = ", ".join(COLUMNS)


def insert(db: Database, type: str, data: dict[str, Any], *, scan_id: str | None = None,
           site_id: str | None = None, owner: str | None = None, at: str | None = None) -> int:
    """Append one event; its seq. The caller's transaction, if any, holds it."""
    cursor = db.execute(
        "INSERT INTO events (type, scan_id, site_id, owner, at, data) VALUES (?, ?, ?, ?, ?, ?)",
        [type, scan_id, site_id, owner, at or clock.utc_now(), orjson.dumps(data).decode()])
    return int(cursor.lastrowid or 0)


def insert_of_scan(db: Database, scan_id: str, events: list[tuple[str, dict[str, Any]]]) -> int:
    """Append a scan's events, (type, data) each, in one transaction, with the scan's owner and
    site as its row holds them (the writers of a scan's state need not know them); how many
    went (none if the scan is gone)."""
    at = clock.utc_now()
    with db.atomic():
        row = next(iter(db.query("SELECT site_id, owner FROM scans WHERE id = ?", [scan_id])), None)
        if row is None:
            return 0
        # One statement for them all: a scan's last save tells of thousands of ports at once.
        return db.conn.executemany(
            "INSERT INTO events (type, scan_id, site_id, owner, at, data) VALUES (?, ?, ?, ?, ?, ?)",
            [(type, scan_id, row["site_id"], row["owner"], at, orjson.dumps(data).decode())
             for type, data in events]).rowcount


def state_of_scan(db: Database, scan_id: str, status: str, error: str | None = None) -> int:
    """A scan's `scan.state` event for `status`, in the caller's transaction (with the write of
    that status), unless the scan already has one: a status is reached once, so a write retried
    after it did commit (its answer lost) tells of it once. How many went (0 or 1)."""
    told = db.query("SELECT 1 FROM events WHERE scan_id = ? AND type = 'scan.state' "
                    "AND data ->> '$.status' = ? LIMIT 1", [scan_id, status])
    if next(iter(told), None) is not None:
        return 0
    return insert_of_scan(db, scan_id, [("scan.state", {"id": scan_id, "status": status}
                                         | ({"error": error} if error is not None else {}))])


def create_scan(db: Database, scan: dict[str, Any]) -> dict[str, Any]:
    """sites.create_scan with the new scan's `queued` event, in one transaction; a scan stored
    earlier under the same Idempotency-Key is returned as it is."""
    with db.atomic():
        row = sites.create_scan(db, scan)
        if row["id"] == scan["id"]:
            state_of_scan(db, row["id"], "queued")
        return row


def update_scan(db: Database, scan_id: str, fields: dict[str, Any], states: list[dict[str, Any]]) -> dict[str, Any]:
    """scans.update with the events of the scan's `states` ({"status", "error"} each, oldest
    first) not written yet, in one transaction: a write retried carries them."""
    with db.atomic():
        row = scans.update(db, scan_id, fields)
        for state in states:
            state_of_scan(db, scan_id, state["status"], state["error"])
        return row


def fail_active(db: Database, reason: str, keep: Collection[str] = ()) -> list[str]:
    """scans.fail_active with each failed scan's `failed` event, in one transaction."""
    with db.atomic():
        failed = scans.fail_active(db, reason, keep)
        for scan_id in failed:
            state_of_scan(db, scan_id, "failed", reason)
        return failed


def after(db: Database, seq: int, limit: int, *, scan_id: str | None = None,
          owner: str | None = None) -> list[dict[str, Any]]:
    """Up to `limit` events with a seq above `seq`, oldest first; of one scan, or of one
    owner's scans (with the events of no scan, which belong to everyone who may read), if given.
    Each read finds its rows through an index from `seq` on: a stream that waits for one owner's
    events never reads the others'."""
    if owner is not None and scan_id is None:
        # Two ordered index ranges merged (SQLite's MERGE (UNION ALL)), not one range of every event.
        query = (f"SELECT {_COLUMNS} FROM events WHERE owner = ? AND scan_id IS NOT NULL AND seq > ? "
                 f"UNION ALL SELECT {_COLUMNS} FROM events WHERE scan_id IS NULL AND seq > ? "
                 "ORDER BY seq LIMIT ?")
        args: list[Any] = [owner, seq, seq, limit]
    else:
        where, args = ["seq > ?"], [seq]
        for column, value in (("scan_id", scan_id), ("owner", owner)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        query = f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        args.append(limit)
    return [row | {"data": orjson.loads(row["data"])} for row in db.query(query, args)]


def last_seq(db: Database) -> int:
    """The newest event's seq, 0 if there is none."""
    return int(next(db.query("SELECT ifnull(max(seq), 0) AS seq FROM events"))["seq"])


def delete_of_scan(db: Database, scan_id: str, limit: int) -> int:
    """Delete up to `limit` of a deleted scan's events; how many went (0: none left)."""
    with db.atomic():
        return db.execute("DELETE FROM events WHERE seq IN "
                          "(SELECT seq FROM events WHERE scan_id = ? LIMIT ?)", [scan_id, limit]).rowcount


def delete_unowned(db: Database, before: str, limit: int) -> int:
    """Delete up to `limit` events written before `before` whose scan is gone, or that belong to
    no scan; how many went."""
    with db.atomic():
        return db.execute(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE at < ? AND "
            "(scan_id IS NULL OR scan_id NOT IN (SELECT id FROM scans)) LIMIT ?)", [before, limit]).rowcount
