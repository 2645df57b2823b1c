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
