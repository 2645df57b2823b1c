"""Change rows: what each completed scan changed in the inventory (store/inventory.py writes
them), each with its `change.<kind>` event in the same transaction; read back per scan, or per
site since a time, oldest first.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from sqlite_utils import Database

COLUMNS = ("seq", "scan_id", "site_id", "device_id", "ip", "kind", "port", "protocol", "before", "after", "at", "cve")
JSON_COLUMNS = ("before", "after", "cve")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM changes"
# a site's or every site's changes oldest first by time (changes_by_site, changes_by_time); a
# scan's share one time, and its index holds them by seq
_ORDER = "ORDER BY at, seq LIMIT ? OFFSET ?"
_SCAN_ORDER = "ORDER BY seq LIMIT ? OFFSET ?"
_ID = len(b'{"id":0,')  # a record's JSON with id 0 starts so: its event's data is the rest after the real id


@dataclasses.dataclass(frozen=True)
class Batch:
    """A merge's changes made ready to write while it plans, so that its write on the store's one
    writer thread does nothing per row but bind it: the `changes` rows and their events' rows,
    each with its place n (1, 2, ...) where the write's seq goes (the table's last seq + n), and
    the records as GET /changes shows them, which the write gives their seqs."""

    rows: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]  # (type, scan_id, site_id, owner, at, n, data after its "id")
    records: list[dict[str, Any]]


def prepare(found: list[dict[str, Any]], *, owner: str | None) -> Batch:
    """Changes (scan_id, site_id, device_id, ip, kind, port?, protocol?, before, after, at, cve?),
    in the order they take their seqs, with their `change.<kind>` events owned by `owner`."""
    records = [_view({**change, "seq": 0}) for change in found]
    return Batch(
        [(n, *(_encode(name, change.get(name)) for name in COLUMNS[1:])) for n, change in enumerate(found, 1)],
        [(f"change.{r['kind']}", r["scan_id"], r["site_id"], owner, r["at"], n, orjson.dumps(r)[_ID:].decode())
         for n, r in enumerate(records, 1)],
        records)


def write(db: Database, batch: Batch) -> list[dict[str, Any]]:
    """Write a batch's changes and their events, one statement per table (a /16's first merge has
    65,536), in the caller's transaction; its records, with their seqs. The transaction holds
    them all, so their seqs follow the table's last one (AUTOINCREMENT: never reused) one by one."""
    last = int(next(iter(db.query("SELECT seq FROM sqlite_sequence WHERE name = 'changes'")), {"seq": 0})["seq"])
    db.conn.executemany(f"INSERT INTO changes ({', '.join(COLUMNS)}) VALUES (? + {last}, "
                        f"{', '.join('?' * (len(COLUMNS) - 1))})", batch.rows)
    db.conn.executemany("INSERT INTO events (type, scan_id, site_id, owner, at, data) "
                        f"VALUES (?, ?, ?, ?, ?, '{{\"id\":' || (? + {last}) || ',' || ?)", batch.events)
    for seq, record in enumerate(batch.records, last + 1):
        record["id"] = seq
    return batch.records


def of_scan(db: Database, scan_id: str, page: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
    """One page of a scan's changes, and how many it has."""
    return _page(db, "scan_id = ?", [scan_id], page, per_page, _SCAN_ORDER)


def of_device(db: Database, device_id: str, limit: int) -> list[dict[str, Any]]:
    """A device's newest `limit` changes, newest first (its history in GET /api/v1/devices/{id})."""
    rows = db.query(f"{_SELECT} WHERE device_id = ? ORDER BY seq DESC LIMIT ?", [device_id, limit])
    return [_view(_decode(row)) for row in rows]


def listing(db: Database, site_id: str | None, since: str | None, page: int,
            per_page: int) -> tuple[list[dict[str, Any]], int]:
    """One page of the changes of a site (or of every site), at or after `since`, and how many."""
    where, args = [], []
    if site_id is not None:
        where.append("site_id = ?")
        args.append(site_id)
    if since is not None:
        where.append("at >= ?")
        args.append(since)
    return _page(db, " AND ".join(where) or "1", args, page, per_page)


def _page(db: Database, where: str, args: list[Any], page: int, per_page: int,
          order: str = _ORDER) -> tuple[list[dict[str, Any]], int]:
    total = next(db.query(f"SELECT count(*) AS n FROM changes WHERE {where}", args))["n"]
    rows = db.query(f"{_SELECT} WHERE {where} {order}", [*args, per_page, (page - 1) * per_page])
    return [_view(_decode(row)) for row in rows], total


def _encode(name: str, value: Any) -> Any:
    return orjson.dumps(value).decode() if name in JSON_COLUMNS and value is not None else value


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    return row | {k: orjson.loads(row[k]) for k in JSON_COLUMNS if row[k] is not None}


def _view(change: dict[str, Any]) -> dict[str, Any]:
    """The record: port, protocol and cve only where they apply."""
    shown = {"id": change["seq"], **{k: change.get(k) for k in COLUMNS[1:-1]}}
    for name in ("port", "protocol"):
        if shown[name] is None:
            del shown[name]
    if change.get("cve") is not None:
        shown["cve"] = change["cve"]
    return shown
