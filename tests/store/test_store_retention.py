"""Issue 9's store: lists by owner, results in batches and pages, deletion by request and by
age, and the migration that brought the request digest."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database, Migrations

from netscand.store import Store, results
from netscand.store import store as store_module
from netscand.store.schema import STEPS

ScanMaker = Callable[..., dict[str, Any]]


def device(ip: str, *ports: int, **fields: Any) -> dict[str, Any]:
    return {"ip": ip, **fields, "ports": [{"port": p, "protocol": "tcp", "state": "open"} for p in ports]}


def test_list_by_owner(store: Store, make_scan: ScanMaker) -> None:
    alice = [make_scan(owner="alice")["id"] for _ in range(3)]
    make_scan(owner="bob")
    make_scan(owner=None)
    rows, total = store.list_scans(1, 2, owner="alice")
    assert total == 3 and [r["id"] for r in rows] == alice[::-1][:2]
    assert store.list_scans(1, 10, status="queued", owner="carol") == ([], 0)
    assert store.list_scans(1, 10)[1] == 5


def test_a_batch_is_one_transaction(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan()["id"]
    store.put_devices(scan_id, [device("198.18.0.2", 22, mac="AA:BB:CC:DD:EE:FF"), device("198.18.0.1")])
    with pytest.raises(ValueError, match="port must be an integer 1-65535"):
        store.put_devices(scan_id, [device("198.18.0.3", 80), device("198.18.0.4", 0)])
    assert [d["ip"] for d in store.result(scan_id)] == ["198.18.0.1", "198.18.0.2"]  # nothing of the bad batch
    # Later batches merge into what is there, as put_device and put_ports do.
    store.put_devices(scan_id, [device("198.18.0.2", 443, hostname="gw", extra={"os_confidence": 0.9})])
    gw = store.result(scan_id)[1]
    assert (gw["mac"], gw["hostname"], gw["os_confidence"]) == ("AA:BB:CC:DD:EE:FF", "gw", 0.9)
    assert [p["port"] for p in gw["ports"]] == [22, 443]
    with pytest.raises(KeyError):
        store.put_devices("no-such-scan", [device("198.18.0.1")])


def test_result_pages(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan()["id"]
    store.put_devices(scan_id, [device(f"198.18.0.{i}", i, 1000 + i) for i in (100, 9, 20, 3, 250)])
    whole = store.result(scan_id)
    assert [d["ip"] for d in whole] == ["198.18.0.3", "198.18.0.9", "198.18.0.20", "198.18.0.100", "198.18.0.250"]
    assert [store.result_page(scan_id, p, 2) for p in (1, 2, 3, 4)] == [whole[:2], whole[2:4], whole[4:], []]
    assert store.counts(scan_id) == (5, 10)
    with pytest.raises(ValueError):
        store.result_page(scan_id, 0, 2)


def test_pages_after_an_address_are_the_result_by_key(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan()["id"]
    store.put_devices(scan_id, [device(f"198.18.0.{i}", i) for i in (100, 9, 20, 3, 250)])
    whole = store.result(scan_id)
    pages, after = [], None
    while page := store.call("read", results.page_after, scan_id, after, 2):
        pages.append(page)
        after = page[-1]["ip"]
    assert pages == [whole[:2], whole[2:4], whole[4:]]
    # The key is the address's (compare.ip_key), so an address not in the result pages too.
    assert store.call("read", results.page_after, scan_id, "198.18.0.10", 10) == whole[2:]
    with pytest.raises(ValueError):
        store.call("read", results.page_after, scan_id, None, 0)


def test_delete_goes_a_chunk_at_a_time(store: Store, make_scan: ScanMaker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "DELETE_CHUNK", 3)
    kept = make_scan(status="completed")["id"]
    gone = make_scan(status="failed")["id"]
    for scan_id in (kept, gone):
        store.put_devices(scan_id, [device(f"198.18.0.{i}", *range(1, 8)) for i in range(1, 5)])
    statements: list[str] = []
    store._db.conn.set_trace_callback(statements.append)  # noqa: SLF001 - watching the SQL it sends
    assert store.delete_scan(gone)
    store._db.conn.set_trace_callback(None)  # noqa: SLF001
    # 28 port rows, 3 a transaction: 10 transactions; 4 device rows: 2 more; one that finds
    # nothing left; and the scan's row.
    assert sum(s == "COMMIT" for s in statements) == 10 + 2 + 1 + 1
    assert store.get_scan(gone) is None and store.result(gone) == []
    assert len(store.result(kept)) == 4 and store.counts(kept) == (4, 28)
    assert not store.delete_scan(gone)


def test_delete_results_takes_one_chunk_of_a_finished_scan_per_call(
        store: Store, make_scan: ScanMaker, monkeypatch: pytest.MonkeyPatch) -> None:
    # What the orchestrator writes one call at a time, so other writes come between the chunks.
    monkeypatch.setattr(store_module, "DELETE_CHUNK", 3)
    running, done = make_scan(status="running")["id"], make_scan(status="completed")["id"]
    for scan_id in (running, done):
        store.put_devices(scan_id, [device("198.18.0.1", 1, 2, 3, 4)])
    assert store.delete_results(running) == 0 and store.counts(running) == (1, 4)
    assert [store.delete_results(done) for _ in range(4)] == [3, 1, 1, 0]  # ports, then the device
    assert store.delete_scan(done) and store.get_scan(done) is None


def test_only_finished_scans_are_deleted(store: Store, make_scan: ScanMaker) -> None:
    for status in ("queued", "running"):
        scan_id = make_scan(status=status)["id"]
        store.put_devices(scan_id, [device("198.18.0.1", 22)])
        assert not store.delete_scan(scan_id)
        assert store.counts(scan_id) == (1, 1)


def test_finished_before(store: Store, make_scan: ScanMaker) -> None:
    old = [make_scan(status=s, finished_at=f"2020-01-0{d}T00:00:00Z")["id"]
           for s, d in (("cancelled", 3), ("completed", 1), ("failed", 2))]
    make_scan(status="completed", finished_at="2026-01-01T00:00:00Z")
    make_scan(status="running")
    assert store.finished_before("2025-01-01T00:00:00Z", 10) == [old[1], old[2], old[0]]
    assert store.finished_before("2025-01-01T00:00:00Z", 1) == [old[1]]
    with pytest.raises(ValueError):
        store.finished_before("2025-01-01", 1)


def test_a_version_1_database_is_upgraded(db_path: Path) -> None:
    old = Database(sqlite3.connect(db_path))
    first = Migrations("netscand")
    first()(STEPS[0])
    first.apply(old)
    old.execute("INSERT INTO scans (id, status, target, profile, options, created_at, progress_percent, "
                "hosts_found, ports_found, idempotency_key, owner) VALUES ('s1', 'completed', '\"198.18.0.1\"', "
                "'quick', '{}', '2026-01-01T00:00:00Z', 100, 1, 1, 'k', 'unix')")
    old.conn.commit()
    old.close()
    store = Store(db_path)
    try:
        assert store.schema_version == len(STEPS) == 9
        assert store.get_scan("s1")["cve"] is None  # m003: no CVE data for a scan from before it
        scan = store.get_scan("s1")
        assert scan is not None and scan["request_digest"] is None
        assert store.scan_by_idempotency_key("unix", "k") == scan
        assert store.list_scans(1, 10, owner="unix")[1] == 1
    finally:
        store.close()
