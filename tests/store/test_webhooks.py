"""Webhooks in the store: a new one starts after the newest event, its cursor and its deliveries
move together, due deliveries are leased, and the log reads newest first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netscand.store import Store
from netscand.statuses import DELIVERY_STATUSES
from netscand.store import events, webhooks

SECRET = "whsec_" + "A" * 43 + "="


def _hook(store: Store, hook_id: str = "00000000-0000-4000-8000-000000000001", **fields: Any) -> dict[str, Any]:
    hook = {"id": hook_id, "url": "http://127.0.0.1:9/", "events": ["change.*"], "secret": SECRET} | fields
    return store.call("create webhook", webhooks.create, hook)


def _event(store: Store, type_: str = "change.port_opened") -> int:
    return store.call("insert event", events.insert, type_, {"ip": "198.18.0.5"}, scan_id="s1")


def _delivery(seq: int) -> dict[str, Any]:
    return {"id": f"msg_{seq:032x}", "seq": seq, "type": "change.port_opened", "body": "{}"}


def test_a_new_webhook_starts_after_the_newest_event(store: Store) -> None:
    _event(store)
    newest = _event(store)
    hook = _hook(store)
    assert hook["last_seq"] == newest and hook["enabled"] is True and hook["events"] == ["change.*"]
    assert store.call("read", events.after, hook["last_seq"], 10) == []


def test_the_cursor_and_the_deliveries_move_together(store: Store) -> None:
    hook = _hook(store)
    seqs = [_event(store) for _ in range(3)]
    assert store.call("enqueue", webhooks.enqueue, hook["id"], hook["last_seq"], seqs[-1], [_delivery(s) for s in seqs])
    # A second writer that read the same cursor writes nothing: no event is queued twice.
    assert not store.call("enqueue", webhooks.enqueue, hook["id"], hook["last_seq"], seqs[-1], [_delivery(99)])
    assert store.call("read", webhooks.get, hook["id"])["last_seq"] == seqs[-1]
    rows, total = store.call("log", webhooks.deliveries, hook["id"], 1, 10)
    assert total == 3 and [r["seq"] for r in rows] == seqs[::-1]
    assert {r["status"] for r in rows} == {"pending"} and {r["attempts"] for r in rows} == {0}


def test_due_deliveries_are_leased_and_recorded(store: Store) -> None:
    hook = _hook(store)
    seqs = [_event(store) for _ in range(3)]
    store.call("enqueue", webhooks.enqueue, hook["id"], hook["last_seq"], seqs[-1], [_delivery(s) for s in seqs])
    claimed = store.call("claim", webhooks.claim_due, 100.0, 2, 200.0, 10, {})
    assert [c["url"] for c in claimed] == [hook["url"]] * 2 and claimed[0]["secret"] == SECRET
    # Leased until 200: only the third is due at 150; none at 150 once it is taken too.
    assert len(store.call("claim", webhooks.claim_due, 150.0, 10, 200.0, 10, {})) == 1
    assert store.call("claim", webhooks.claim_due, 150.0, 10, 200.0, 10, {}) == []
    assert store.call("due", webhooks.next_due, []) == 200.0
    store.call("record", webhooks.record, claimed[0]["id"], status="delivered", attempts=1, next_attempt=None,
               last_status=200, last_error=None)
    store.call("record", webhooks.record, claimed[1]["id"], status="pending", attempts=1, next_attempt=300.0,
               last_status=500, last_error="the receiver answered 500")
    rows, _ = store.call("log", webhooks.deliveries, hook["id"], 1, 10, "delivered")
    assert [(r["id"], r["last_status"]) for r in rows] == [(claimed[0]["id"], 200)] and rows[0]["delivered_at"]
    # The third's lease ended unrecorded (the daemon stopped mid-attempt): it is due again.
    claim = store.call("claim", webhooks.claim_due, 250.0, 10, 400.0, 10, {})
    assert [c["id"] for c in claim] == [_delivery(seqs[2])["id"]]
    assert [c["id"] for c in store.call("claim", webhooks.claim_due, 300.0, 10, 400.0, 10, {})] == [claimed[1]["id"]]


def test_a_disabled_webhook_is_not_sent_and_enabled_again_skips_what_it_missed(store: Store) -> None:
    hook = _hook(store)
    seq = _event(store)
    store.call("enqueue", webhooks.enqueue, hook["id"], hook["last_seq"], seq, [_delivery(seq)])
    store.call("update", webhooks.update, hook["id"], {"enabled": False})
    assert store.call("enabled", webhooks.enabled) == []
    assert store.call("due", webhooks.next_due, []) is None  # the sender sleeps, rather than spin on it
    assert store.call("claim", webhooks.claim_due, 1e12, 10, 2e12, 10, {}) == []
    missed = _event(store)
    again = store.call("update", webhooks.update, hook["id"], {"enabled": True, "events": ["*"]})
    assert again["last_seq"] == missed and again["events"] == ["*"]
    assert len(store.call("claim", webhooks.claim_due, 1e12, 10, 2e12, 10, {})) == 1  # its pending one goes now


def test_deleting_a_webhook_deletes_its_log(store: Store) -> None:
    hook = _hook(store)
    seq = _event(store)
    store.call("enqueue", webhooks.enqueue, hook["id"], hook["last_seq"], seq, [_delivery(seq)])
    assert store.call("delete", webhooks.delete, hook["id"]) is True
    assert store.call("delete", webhooks.delete, hook["id"]) is False
    assert store.call("log", webhooks.deliveries, hook["id"], 1, 10) == ([], 0)
    assert store.call("update", webhooks.update, hook["id"], {"enabled": False}) is None


def test_pages_are_newest_first(store: Store) -> None:
    for n in range(3):
        _hook(store, f"00000000-0000-4000-8000-00000000000{n}")
    rows, total = store.call("page", webhooks.page, 2, 2)
    assert total == 3 and len(rows) == 1


def _plan(store: Store, sql: str, args: list[Any]) -> list[str]:
    return store.call("plan", lambda db: [r["detail"] for r in db.query(f"EXPLAIN QUERY PLAN {sql}", args)])


@pytest.mark.parametrize("status", ["pending", "delivered", "failed"])
def test_the_log_filter_uses_its_index(store: Store, status: str) -> None:
    plan = _plan(store, "SELECT id FROM deliveries WHERE webhook_id = ? AND status = ? ORDER BY seq DESC",
                 ["x", status])
    assert any("deliveries_by_status" in step for step in plan), plan


def test_the_sender_and_the_retention_read_by_index(store: Store) -> None:
    plan = _plan(store, "SELECT id FROM deliveries WHERE webhook_id = ? AND status = 'pending' AND next_attempt <= ? "
                 "ORDER BY next_attempt, seq LIMIT 2", ["x", 5.0])
    assert any("deliveries_due" in step for step in plan) and not any("TEMP B-TREE" in step for step in plan), plan
    plan = _plan(store, "SELECT min(next_attempt) FROM deliveries WHERE webhook_id = ? AND status = 'pending'", ["x"])
    assert any("deliveries_due" in step for step in plan), plan
    plan = _plan(store, "SELECT id FROM deliveries WHERE status != 'pending' AND last_attempt_at < ? LIMIT 10", ["x"])
    assert any("deliveries_finished" in step for step in plan), plan


def test_a_webhook_gets_no_more_than_its_share_of_sends(store: Store) -> None:
    hanging, healthy = _hook(store), _hook(store, "00000000-0000-4000-8000-000000000002")
    seqs = [_event(store) for _ in range(6)]
    store.call("enqueue", webhooks.enqueue, hanging["id"], hanging["last_seq"], seqs[-1], [_delivery(s) for s in seqs])
    late = [_event(store)]  # the healthy one's only delivery is due after all of the other's
    store.call("enqueue", webhooks.enqueue, healthy["id"], healthy["last_seq"], late[0],
               [_delivery(s) for s in late])
    claimed = store.call("claim", webhooks.claim_due, 100.0, 4, 200.0, 2, {hanging["id"]: 1})
    assert [c["webhook_id"] for c in claimed] == [hanging["id"], healthy["id"]]
    assert store.call("claim", webhooks.claim_due, 100.0, 4, 200.0, 2, {hanging["id"]: 2, healthy["id"]: 1}) == []
    # The sender sleeps until a send ends while the only due deliveries are a full webhook's.
    assert store.call("due", webhooks.next_due, [hanging["id"]]) == 200.0
    assert store.call("due", webhooks.next_due, []) == 0.0


def test_old_finished_deliveries_go_and_pending_ones_stay(store: Store) -> None:
    hook = _hook(store)
    seqs = [_event(store) for _ in range(5)]
    store.call("enqueue", webhooks.enqueue, hook["id"], hook["last_seq"], seqs[-1], [_delivery(s) for s in seqs])
    for seq, status in zip(seqs, ["delivered", "failed", "delivered", "pending", "pending"], strict=True):
        store.call("record", webhooks.record, _delivery(seq)["id"], status=status, attempts=1, next_attempt=None,
                   last_status=200, last_error=None)
    store.call("age", lambda db: db.execute("UPDATE deliveries SET last_attempt_at = '2020-01-01T00:00:00Z' "
                                            "WHERE seq != ?", [seqs[2]]))
    assert store.call("prune", webhooks.delete_finished, "2021-01-01T00:00:00Z", 1) == 1
    assert store.call("prune", webhooks.delete_finished, "2021-01-01T00:00:00Z", 10) == 1
    assert store.call("prune", webhooks.delete_finished, "2021-01-01T00:00:00Z", 10) == 0
    rows, _ = store.call("log", webhooks.deliveries, hook["id"], 1, 10)
    assert sorted((r["seq"], r["status"]) for r in rows) == [(seqs[2], "delivered"), (seqs[3], "pending"),
                                                             (seqs[4], "pending")]


def test_pending_deliveries_survive_a_reopen(db_path: Path) -> None:
    first = Store(db_path)
    hook = _hook(first)
    seq = _event(first)
    first.call("enqueue", webhooks.enqueue, hook["id"], hook["last_seq"], seq, [_delivery(seq)])
    first.close()
    again = Store(db_path)
    try:
        claim = again.call("claim", webhooks.claim_due, 1.0, 10, 2.0, 10, {})
        assert [c["id"] for c in claim] == [_delivery(seq)["id"]]
    finally:
        again.close()


def test_the_schema_takes_the_delivery_statuses_the_api_names(store: Store) -> None:
    sql = store.call("schema", lambda db: db.execute("SELECT sql FROM sqlite_master WHERE name = 'deliveries'")
                     .fetchone()[0])
    assert f"CHECK (status IN ({', '.join(repr(s) for s in DELIVERY_STATUSES)}))" in sql
