"""The retention pass over a real store file: webhook deliveries delivered or given up before
daemon.retention_days go with their bodies, in chunks; pending ones stay, however old."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from netscand.scan import retention
from netscand.scan.events import Events
from netscand.scan.limits import CurrentLimits
from netscand.scan.persist import Persist
from netscand.scan.retention import Retention
from netscand.store import Store
from netscand.store import events as stored_events
from netscand.store import webhooks as stored
from netscand.store.clock import utc_now
from netscand.store.threads import StoreThreads
from tests.api.conftest import make_limits

SECRET = "whsec_" + "A" * 43 + "="


def test_old_finished_deliveries_go_and_pending_ones_stay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "EVENTS_CHUNK", 2)  # several chunks
    store = Store(tmp_path / "netscand.db")
    hook = store.call("create", stored.create, {"id": "00000000-0000-4000-8000-000000000001",
                                                "url": "http://127.0.0.1:9/", "events": ["*"], "secret": SECRET})
    seqs = [store.call("insert", stored_events.insert, "scan.state", {}) for _ in range(8)]
    store.call("enqueue", stored.enqueue, hook["id"], hook["last_seq"], seqs[-1],
               [{"id": f"msg_{s:032x}", "seq": s, "type": "scan.state", "body": "{}"} for s in seqs])
    # Five delivered or failed 31 days ago, one delivered today, two pending (one retried 31 days ago).
    fates = ["delivered", "failed", "delivered", "failed", "delivered", "delivered", "pending", "pending"]
    for seq, fate in zip(seqs, fates, strict=True):
        store.call("record", stored.record, f"msg_{seq:032x}", status=fate, attempts=1, next_attempt=None,
                   last_status=None, last_error=None)
    old = utc_now(-timedelta(days=31))
    store.call("age", lambda db: db.execute("UPDATE deliveries SET last_attempt_at = ? WHERE seq NOT IN (?, ?)",
                                            [old, seqs[5], seqs[7]]))

    async def expire() -> int:
        io = StoreThreads()
        limits = CurrentLimits(make_limits(retention_days=30))
        return await Retention(store, io, Persist(store, io, Events(store, io)), limits).expire()

    try:
        asyncio.run(expire())
        rows, total = store.call("log", stored.deliveries, hook["id"], 1, 100)
        assert total == 3 and sorted((r["seq"], r["status"]) for r in rows) == [
            (seqs[5], "delivered"), (seqs[6], "pending"), (seqs[7], "pending")]
    finally:
        store.close()
