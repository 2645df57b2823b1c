"""Events: what happened, in the order it was written, each numbered by `seq` (the id a
Server-Sent Events client resumes from with Last-Event-ID, and a webhook's cursor).

An event is written in the same transaction as what it tells of where there is one (a change
with the inventory it changed), so a reader never sees one without the other.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlite_utils import Database

from netscand.store import clock

COLUMNS = ("seq", "type", "scan_id", "site_id", "owner", "at", "data")


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
        return sum(db.execute(
            "INSERT INTO events (type, scan_id, site_id, owner, at, data) "
            "SELECT ?, id, site_id, owner, ?, ? FROM scans WHERE id = ?",
            [type, at, orjson.dumps(data).decode(), scan_id]).rowcount for type, data in events)


def after(db: Database, seq: int, limit: int, *, scan_id: str | None = None,
          owner: str | None = None) -> list[dict[str, Any]]:
    """Up to `limit` events with a seq above `seq`, oldest first; of one scan, or of one
    owner's scans (with the events of no scan, which belong to everyone who may read), if given."""
    where, args = ["seq > ?"], [seq]
    if scan_id is not None:
        where.append("scan_id = ?")
        args.append(scan_id)
    if owner is not None:
        where.append("(owner = ? OR scan_id IS NULL)")
        args.append(owner)
    rows = db.query(f"SELECT {', '.join(COLUMNS)} FROM events WHERE {' AND '.join(where)} "
                    "ORDER BY seq LIMIT ?", [*args, limit])
    return [row | {"data": orjson.loads(row["data"])} for row in rows]


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
