"""store/checkpoints.py: a running scan's checkpoint, written in deltas, read back whole; which
scans resume at start; gone with its scan; and fail_active keeping the resumed ones."""

from __future__ import annotations

from pathlib import Path

from netscand.store import Store, checkpoints
from netscand.store import events as stored_events
from netscand.store.checkpoints import Delta, PlanRow, RecordRow, ShardRow


def _running(store: Store, scan_id: str, created: str) -> None:
    store.create_scan({"id": scan_id, "target": "198.18.0.1", "profile": "quick", "created_at": created})
    store.update_scan(scan_id, status="running")


def test_deltas_add_up_to_the_checkpoint_read_back(store: Store) -> None:
    _running(store, "s1", "2026-01-01T00:00:00Z")
    store.call("t", checkpoints.begin, "s1", '{"spec": 1}', True, 500.0)
    store.call("t", checkpoints.save, "s1", Delta(
        plans=[PlanRow(1, 0, b"k" * 16, 65536, b"d" * 16)],
        shards=[ShardRow(1, 0, 3, False, 0, -1, 0, False)],
        records=[RecordRow(1, 0, b"r1")]))
    # A later delta replaces a shard's row, and adds records after the earlier ones.
    store.call("t", checkpoints.save, "s1", Delta(
        shards=[ShardRow(1, 0, 3, False, 1, 0, 8192, True), ShardRow(1, 0, 5, True, 2, 2, 10, False)],
        records=[RecordRow(1, 0, b"r2")]))
    got = store.call("t", checkpoints.load, "s1")
    assert got is not None
    assert (got.spec, got.remote, got.rate) == ('{"spec": 1}', True, 500.0)
    assert got.plans == {(1, 0): PlanRow(1, 0, b"k" * 16, 65536, b"d" * 16)}
    assert got.shards == {(1, 0): {3: ShardRow(1, 0, 3, False, 1, 0, 8192, True),
                                   5: ShardRow(1, 0, 5, True, 2, 2, 10, False)}}
    assert got.records == {(1, 0): [b"r1", b"r2"]}


def test_only_running_scans_with_a_checkpoint_resume_and_each_resume_is_counted(store: Store) -> None:
    for scan_id, created in (("late", "2026-01-02T00:00:00Z"), ("early", "2026-01-01T00:00:00Z"),
                             ("none", "2026-01-01T00:00:00Z")):
        _running(store, scan_id, created)
    for scan_id in ("late", "early"):
        store.call("t", checkpoints.begin, scan_id, "{}", False, None)
    assert store.call("t", checkpoints.resumable) == ["early", "late"]
    store.call("t", checkpoints.resuming, ["early"])
    assert store.call("t", lambda db: db.execute("SELECT resumes FROM resume_scans WHERE scan_id = 'early'")
                      .fetchone()[0]) == 1
    failed = store.call("t", stored_events.fail_active, "restarted", ["early", "late"])
    assert failed == ["none"]
    assert store.get_scan("early")["status"] == "running" and store.get_scan("none")["status"] == "failed"


def test_a_checkpoint_goes_with_its_scan_or_when_dropped(store: Store, db_path: Path) -> None:
    for scan_id in ("a", "b"):
        _running(store, scan_id, "2026-01-01T00:00:00Z")
        store.call("t", checkpoints.begin, scan_id, "{}", False, None)
        store.call("t", checkpoints.save, scan_id, Delta(plans=[PlanRow(1, 0, b"k", 1024, b"d")],
                                                         shards=[ShardRow(1, 0, 0, True, 0, 0, 0, True)],
                                                         records=[RecordRow(1, 0, b"r")]))
    store.call("t", checkpoints.drop, "a")
    assert store.call("t", checkpoints.load, "a") is None
    store.update_scan("b", status="completed")
    while store.delete_results("b"):
        pass
    store.delete_scan("b")
    tables = ("resume_scans", "resume_plans", "resume_shards", "resume_records")
    assert [store.call("t", lambda db, t=t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # noqa: S608
            for t in tables] == [0, 0, 0, 0]
