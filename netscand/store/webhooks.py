"""Webhooks and their delivery log: what each takes, where it stands in the events (its cursor,
`last_seq`), and one row per event it was sent, with every attempt's outcome.

A delivery row is written before its first attempt, in the same transaction that moves the
webhook's cursor past its event, so a daemon that stops at any point neither loses an event
nor queues one twice; the sender takes due rows with a lease (claim_due) for the same reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlite_utils import Database

from netscand.store import clock, events

HOOK_COLUMNS = "id, url, events, secret, enabled, last_seq, owner, created_at, updated_at"
DELIVERY_COLUMNS = ("id, webhook_id, seq, type, status, attempts, next_attempt, last_status, last_error, "
                    "created_at, last_attempt_at, delivered_at")


def create(db: Database, hook: dict[str, Any]) -> dict[str, Any]:
    """Store a webhook (id, url, events, secret, owner); it starts after the newest event, so
    it is sent what happens from now on, not the whole history."""
    now = clock.utc_now()
    with db.atomic():
        db.execute(f"INSERT INTO webhooks ({HOOK_COLUMNS}) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?)",
                   [hook["id"], hook["url"], orjson.dumps(hook["events"]).decode(), hook["secret"],
                    events.last_seq(db), hook.get("owner"), now, now])
    found = get(db, hook["id"])
    assert found is not None
    return found


def get(db: Database, hook_id: str) -> dict[str, Any] | None:
    rows = db.query(f"SELECT {HOOK_COLUMNS} FROM webhooks WHERE id = ?", [hook_id])
    return next((_hook(r) for r in rows), None)


def page(db: Database, number: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
    """One page of webhooks, newest first, and how many there are."""
    total = next(db.query("SELECT count(*) AS n FROM webhooks"))["n"]
    rows = db.query(f"SELECT {HOOK_COLUMNS} FROM webhooks ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
                    [per_page, (number - 1) * per_page])
    return [_hook(r) for r in rows], total


def update(db: Database, hook_id: str, fields: dict[str, Any]) -> dict[str, Any] | None:
    """Change url, events or enabled; None if there is no such webhook. A webhook enabled again
    starts after the newest event, as a new one does: what happened while it was off is not
    sent (its pending deliveries are, now that it is on)."""
    with db.atomic():
        found = get(db, hook_id)
        if found is None:
            return None
        values = {k: v for k, v in fields.items() if k in ("url", "events", "enabled")}
        if values.get("enabled") and not found["enabled"]:
            values["last_seq"] = events.last_seq(db)
        if "events" in values:
            values["events"] = orjson.dumps(values["events"]).decode()
        values["updated_at"] = clock.utc_now()
        db.execute(f"UPDATE webhooks SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?",
                   [*(int(v) if isinstance(v, bool) else v for v in values.values()), hook_id])
    return get(db, hook_id)


def delete(db: Database, hook_id: str) -> bool:
    """Delete a webhook with its delivery log; False if there is no such webhook."""
    with db.atomic():
        return db.execute("DELETE FROM webhooks WHERE id = ?", [hook_id]).rowcount > 0


def enabled(db: Database) -> list[dict[str, Any]]:
    """The webhooks the sender reads events for."""
    return [_hook(r) for r in db.query(f"SELECT {HOOK_COLUMNS} FROM webhooks WHERE enabled = 1 ORDER BY id")]


def enqueue(db: Database, hook_id: str, seen: int, last_seq: int, deliveries: list[dict[str, Any]]) -> bool:
    """Move the webhook's cursor from `seen` to `last_seq` and write its new deliveries (id,
    seq, type, body), due now, together. False, writing nothing, if the cursor is no longer
    at `seen` (the webhook was deleted or enabled again meanwhile): the caller reads again."""
    now = clock.utc_now()
    with db.atomic():
        moved = db.execute("UPDATE webhooks SET last_seq = ? WHERE id = ? AND last_seq = ?",
                           [last_seq, hook_id, seen]).rowcount
        if not moved:
            return False
        db.conn.executemany(
            "INSERT INTO deliveries (id, webhook_id, seq, type, body, status, attempts, next_attempt, created_at) "
            "VALUES (?, ?, ?, ?, ?, 'pending', 0, 0, ?)",
            [[d["id"], hook_id, d["seq"], d["type"], d["body"], now] for d in deliveries])
    return True


def claim_due(db: Database, now: float, limit: int, lease_until: float, per_hook: int,
              in_flight: Mapping[str, int]) -> list[dict[str, Any]]:
    """Up to `limit` pending deliveries of enabled webhooks due by `now`, soonest first, with
    what sending them needs (url, secret, attempts, body); each is leased until `lease_until`.
    No webhook gets more than `per_hook` in flight, counting `in_flight` (webhook id -> sends
    under way), so a receiver that hangs cannot take every place."""
    with db.atomic():
        rows: list[dict[str, Any]] = []
        for hook in db.query("SELECT id, url, secret FROM webhooks WHERE enabled = 1"):
            room = per_hook - in_flight.get(hook["id"], 0)
            if room > 0:
                rows += [row | {"url": hook["url"], "secret": hook["secret"]} for row in db.query(
                    "SELECT id, webhook_id, body, attempts, next_attempt, seq FROM deliveries "
                    "WHERE webhook_id = ? AND status = 'pending' AND next_attempt <= ? "
                    "ORDER BY next_attempt, seq LIMIT ?", [hook["id"], now, min(room, limit)])]
        rows = sorted(rows, key=lambda row: (row["next_attempt"], row["seq"]))[:limit]
        db.conn.executemany("UPDATE deliveries SET next_attempt = ? WHERE id = ?",
                            [[lease_until, row["id"]] for row in rows])
    return rows


def next_due(db: Database, full: Sequence[str]) -> float | None:
    """When the soonest pending delivery of an enabled webhook is due (Unix time), None if none
    is: a disabled webhook's, long due, must not keep the sender from sleeping, nor one of the
    webhooks `full` (at their cap of sends in flight: one ending wakes the sender)."""
    # Per webhook, so each minimum is one step down its index, however many are pending.
    row = next(db.query("SELECT min((SELECT min(next_attempt) FROM deliveries WHERE webhook_id = w.id "
                        "AND status = 'pending')) AS due FROM webhooks w WHERE enabled = 1 "
                        "AND id NOT IN (SELECT value FROM json_each(?))", [orjson.dumps(list(full)).decode()]))
    return row["due"]


def record(db: Database, delivery_id: str, *, status: str, attempts: int, next_attempt: float | None,
           last_status: int | None, last_error: str | None) -> None:
    """An attempt's outcome: delivered, failed for good, or pending until `next_attempt`."""
    now = clock.utc_now()
    with db.atomic():
        db.execute(
            "UPDATE deliveries SET status = ?, attempts = ?, next_attempt = ?, last_status = ?, last_error = ?, "
            "last_attempt_at = ?, delivered_at = ? WHERE id = ?",
            [status, attempts, next_attempt, last_status, last_error, now,
             now if status == "delivered" else None, delivery_id])


def deliveries(db: Database, hook_id: str, number: int, per_page: int,
               status: str | None = None) -> tuple[list[dict[str, Any]], int]:
    """One page of a webhook's delivery log, newest event first, and how many match."""
    where, args = "webhook_id = ?" + (" AND status = ?" if status else ""), [hook_id, *([status] if status else [])]
    total = next(db.query(f"SELECT count(*) AS n FROM deliveries WHERE {where}", args))["n"]
    rows = db.query(f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                    [*args, per_page, (number - 1) * per_page])
    return list(rows), total


def delete_finished(db: Database, before: str, limit: int) -> int:
    """Delete up to `limit` delivered or failed deliveries whose last attempt was before
    `before`; how many went. Pending ones stay, however old: they are still to be sent."""
    with db.atomic():
        return db.execute(
            "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE status != 'pending' "
            "AND last_attempt_at < ? LIMIT ?)", [before, limit]).rowcount


def _hook(row: dict[str, Any]) -> dict[str, Any]:
    return row | {"events": orjson.loads(row["events"]), "enabled": bool(row["enabled"])}
