"""A completed scan is merged into the inventory as it ends (live.py, scan/inventory.py): over the
fake engine, two scans of a network that changed between them; the second's changes are the
network's, written with their events before the scan's `scan.state` completed; a cancelled scan
merges nothing; a merge that fails leaves the scan completed."""

from __future__ import annotations

from typing import Any

import pytest

from netscand.store import changes, inventory
from tests.scan.test_live import Harness, harness, run, running, until  # noqa: F401  (harness: a fixture)
from tests.scan.test_runner_unit import Device, Network, mac


def _scan(h: Harness, cancel: bool = False) -> str:
    scan_id = h.enqueue("alice")

    async def body() -> None:
        h.live.admit()
        if cancel:
            h.live.finish(scan_id, "cancelled", None)
        await until(lambda: not h.live.running and not h.live.finishing)

    run(running(h, body))
    return scan_id


def _changes(h: Harness, scan_id: str) -> list[tuple[Any, ...]]:
    found, _ = h.store.call("read", changes.of_scan, scan_id, 1, 100)
    return [(c["kind"], c["ip"], c.get("port")) for c in found]


def _events(h: Harness, scan_id: str) -> list[str]:
    rows = h.store.call("read", lambda db: list(db.query(
        "SELECT type, data FROM events WHERE scan_id = ? ORDER BY seq", [scan_id])))
    return [r["type"] + (":" + r["data"].split('"status":"')[1].split('"')[0] if r["type"] == "scan.state" else "")
            for r in rows if r["type"].startswith(("change.", "scan.state"))]


def test_the_second_scan_changes_what_changed_and_its_events_come_before_completed(harness: Harness) -> None:
    first = _scan(harness)
    assert _changes(harness, first) == [("device_appeared", "198.18.0.2", None),
                                        ("device_appeared", "198.18.0.5", None)]
    harness.network = Network({"198.18.0.3": Device(mac(3), {22}), "198.18.0.5": Device(mac(5), {22})})
    second = _scan(harness)
    assert harness.status(second) == "completed"
    assert _changes(harness, second) == [("device_gone", "198.18.0.2", None), ("device_appeared", "198.18.0.3", None),
                                         ("port_closed", "198.18.0.5", 80)]
    assert _events(harness, second)[-4:] == ["change.device_gone", "change.device_appeared", "change.port_closed",
                                             "scan.state:completed"]


def test_a_cancelled_scan_merges_nothing(harness: Harness) -> None:
    scan_id = _scan(harness, cancel=True)
    assert harness.status(scan_id) == "cancelled" and _changes(harness, scan_id) == []


def test_a_merge_that_fails_leaves_the_scan_completed(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("a bug in the merge")

    monkeypatch.setattr(inventory, "merge_scan", broken)
    scan_id = _scan(harness)
    assert harness.status(scan_id) == "completed" and _changes(harness, scan_id) == []
