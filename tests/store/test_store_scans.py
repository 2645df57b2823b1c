"""Scan rows: create, read, update, list, idempotency keys, interrupted scans."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from netscand.store import Store, StoreError

ScanMaker = Callable[..., dict[str, Any]]

KEYS = {
    "id", "status", "target", "profile", "site_id", "options", "created_at", "started_at",
    "finished_at", "estimated_completion", "progress_percent", "hosts_found", "ports_found", "error",
    "idempotency_key", "owner", "request_digest", "cve", "coverage",
}
SITE_A = "6f1c3a8e-0d4b-4c1e-9a57-1f0e2d3c4b5a"
SITE_B = "0b9d7c6e-5f4a-4e3d-8c2b-1a0f9e8d7c6b"


def test_create_fills_in_starting_values(store: Store) -> None:
    options = {"ports": [22, "80-90"], "timeout_ms": 5000, "enable_profiling": True}
    scan = store.create_scan({"id": "s1", "target": ["198.18.0.0/24", "gw.lab"], "profile": "custom",
                              "options": options})
    assert set(scan) == KEYS
    assert scan["status"] == "queued"
    assert scan["target"] == ["198.18.0.0/24", "gw.lab"]
    assert scan["options"] == options
    assert scan["progress_percent"] == scan["hosts_found"] == scan["ports_found"] == 0
    assert scan["created_at"].endswith("Z")
    assert scan["started_at"] is None and scan["error"] is None and scan["cve"] is None
    assert scan["coverage"] is None
    assert store.get_scan("s1") == scan


def test_an_ended_scans_coverage_is_kept_as_json(store: Store, make_scan: ScanMaker) -> None:
    coverage = {"probes_sent": 9132, "probes_answered": 8198, "probes_retried": 927,
                "probes_recovered": 830, "retries": 3, "estimated_loss": 0.1013}
    scan = make_scan()
    store.update_scan(scan["id"], status="completed", coverage=coverage)
    assert store.get_scan(scan["id"])["coverage"] == coverage


def test_a_string_target_stays_a_string(store: Store, make_scan: ScanMaker) -> None:
    scan = make_scan(target="198.18.0.7")
    assert store.get_scan(scan["id"]) == scan
    assert scan["target"] == "198.18.0.7"


def test_duplicate_id(store: Store, make_scan: ScanMaker) -> None:
    scan = make_scan()
    with pytest.raises(StoreError, match="already exists"):
        make_scan(id=scan["id"])


def test_get_unknown(store: Store) -> None:
    assert store.get_scan("no-such-scan") is None


def test_create_refuses_bad_fields(store: Store) -> None:
    with pytest.raises(ValueError, match="needs profile"):
        store.create_scan({"id": "s1", "target": "198.18.0.1"})
    with pytest.raises(ValueError, match="unknown scan field"):
        store.create_scan({"id": "s1", "target": "198.18.0.1", "profile": "quick", "colour": "red"})
    with pytest.raises(ValueError, match="ending in 'Z'"):
        store.create_scan({"id": "s1", "target": "198.18.0.1", "profile": "quick",
                           "created_at": "2026-03-15T10:30:00+00:00"})


def test_update_is_partial_and_returns_the_new_row(store: Store, make_scan: ScanMaker) -> None:
    scan = make_scan(site_id=SITE_A)
    running = store.update_scan(scan["id"], status="running", started_at="2026-03-15T10:30:00Z")
    assert running == scan | {"status": "running", "started_at": "2026-03-15T10:30:00Z"}
    progressed = store.update_scan(scan["id"], progress_percent=45, hosts_found=12, ports_found=37,
                                   estimated_completion="2026-03-15T10:32:15Z")
    assert progressed == running | {"progress_percent": 45, "hosts_found": 12, "ports_found": 37,
                                    "estimated_completion": "2026-03-15T10:32:15Z"}
    assert store.get_scan(scan["id"]) == progressed


def test_update_refusals(store: Store, make_scan: ScanMaker) -> None:
    scan = make_scan()
    with pytest.raises(KeyError):
        store.update_scan("no-such-scan", status="running")
    with pytest.raises(ValueError, match="unknown status"):
        store.update_scan(scan["id"], status="paused")
    with pytest.raises(ValueError, match="0-100"):
        store.update_scan(scan["id"], progress_percent=101)
    with pytest.raises(ValueError, match="unknown scan field"):
        store.update_scan(scan["id"], devices_found=3)
    with pytest.raises(ValueError, match="cannot change"):
        store.update_scan(scan["id"], id="other")
    assert store.get_scan(scan["id"]) == scan


def test_list_newest_first_with_pages_and_total(store: Store, make_scan: ScanMaker) -> None:
    ids = [make_scan()["id"] for _ in range(7)]
    newest_first = ids[::-1]
    pages = [store.list_scans(page, 3) for page in (1, 2, 3, 4)]
    assert [[s["id"] for s in scans] for scans, _ in pages] == [
        newest_first[:3], newest_first[3:6], newest_first[6:], [],
    ]
    assert {total for _, total in pages} == {7}
    scans, _ = store.list_scans(1, 100)
    assert all(set(s) == KEYS for s in scans)


def test_list_breaks_same_second_ties_newest_first(store: Store) -> None:
    # created_at has one-second resolution: scans started in the same second keep their order.
    for scan_id in ("c", "a", "b"):
        store.create_scan({"id": scan_id, "target": "198.18.0.1", "profile": "quick",
                           "created_at": "2026-03-15T10:30:00Z"})
    assert [s["id"] for s in store.list_scans(1, 10)[0]] == ["b", "a", "c"]


def test_list_filters(store: Store, make_scan: ScanMaker) -> None:
    done_a = make_scan(status="completed", site_id=SITE_A)["id"]
    make_scan(status="running", site_id=SITE_A)
    done_b = make_scan(status="completed", site_id=SITE_B)["id"]
    make_scan(status="completed")

    scans, total = store.list_scans(1, 2, status="completed")
    assert total == 3 and len(scans) == 2
    scans, total = store.list_scans(1, 25, site_id=SITE_A)
    assert total == 2 and {s["site_id"] for s in scans} == {SITE_A}
    scans, total = store.list_scans(1, 25, status="completed", site_id=SITE_A)
    assert (total, [s["id"] for s in scans]) == (1, [done_a])
    scans, total = store.list_scans(1, 25, status="completed", site_id=SITE_B)
    assert (total, [s["id"] for s in scans]) == (1, [done_b])
    assert store.list_scans(1, 25, status="cancelled") == ([], 0)


def test_list_refuses_bad_arguments(store: Store) -> None:
    with pytest.raises(ValueError):
        store.list_scans(0, 25)
    with pytest.raises(ValueError):
        store.list_scans(1, 0)
    with pytest.raises(ValueError, match="unknown status"):
        store.list_scans(1, 25, status="done")


def test_idempotency_key_is_unique_per_owner(store: Store, make_scan: ScanMaker) -> None:
    alice = make_scan(owner="alice", idempotency_key="k1")
    bob = make_scan(owner="bob", idempotency_key="k1")
    local = make_scan(owner="unix:1000", idempotency_key="k1")
    anonymous = make_scan(owner=None, idempotency_key="k1")
    assert store.scan_by_idempotency_key("alice", "k1") == alice
    assert store.scan_by_idempotency_key("bob", "k1") == bob
    assert store.scan_by_idempotency_key("unix:1000", "k1") == local
    assert store.scan_by_idempotency_key(None, "k1") == anonymous
    assert store.scan_by_idempotency_key("alice", "k2") is None
    assert store.scan_by_idempotency_key("carol", "k1") is None
    for owner in ("alice", None):
        with pytest.raises(StoreError, match=f"already used by scan {(alice if owner else anonymous)['id']}"):
            make_scan(owner=owner, idempotency_key="k1")
    make_scan(owner="alice")  # scans without a key never clash
    make_scan(owner="alice")


def test_fail_interrupted_keeps_results(store: Store, make_scan: ScanMaker) -> None:
    queued = make_scan()
    running = make_scan(status="running", started_at="2026-03-15T10:30:00Z", progress_percent=40,
                        estimated_completion="2026-03-15T10:40:00Z")
    done = make_scan(status="completed", finished_at="2026-03-15T10:35:00Z")
    store.put_device(running["id"], "198.18.0.5", mac="02:00:00:00:00:05")
    store.put_ports(running["id"], "198.18.0.5", [{"port": 22, "protocol": "tcp", "state": "open"}])
    before = store.result(running["id"])

    failed = store.fail_interrupted("daemon restarted while the scan ran")

    assert failed == [queued["id"], running["id"]]
    for scan_id in failed:
        scan = store.get_scan(scan_id)
        assert scan is not None
        assert scan["status"] == "failed"
        assert scan["error"] == "daemon restarted while the scan ran"
        assert scan["finished_at"] is not None and scan["finished_at"].endswith("Z")
        assert scan["estimated_completion"] is None
    kept = store.get_scan(running["id"])
    assert kept is not None and kept["progress_percent"] == 40
    assert store.result(running["id"]) == before
    assert store.get_scan(done["id"]) == done
    assert store.fail_interrupted("again") == []


def test_writes_are_visible_at_once_to_another_connection(
    store: Store, db_path: Path, make_scan: ScanMaker,
) -> None:
    scan = make_scan()
    store.update_scan(scan["id"], status="running")
    other = Store(db_path)
    try:
        seen = other.get_scan(scan["id"])
        assert seen is not None and seen["status"] == "running"
    finally:
        other.close()
