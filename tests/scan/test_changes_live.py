"""A completed scan is merged into the inventory as it ends (live.py, scan/inventory.py): over the
fake engine, two scans of a network that changed between them; the second's changes are the
network's, written with their events before the scan's `scan.state` completed; a scan cancelled
after finding hosts merges nothing; a merge that fails inside its transaction leaves nothing of it
and the scan completed."""

from __future__ import annotations

import asyncio
from typing import Any

from netscand.store import changes, inventory
from tests.scan.harness import Harness, run, running, until
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


def _inventory(h: Harness) -> list[dict[str, Any]]:
    return h.store.call("read", lambda db: list(db.query("SELECT * FROM inventory ORDER BY id")))


def test_a_scan_cancelled_after_finding_hosts_merges_nothing(harness: Harness) -> None:
    _scan(harness)
    known = _inventory(harness)
    harness.network = Network({"198.18.0.5": Device(mac(5), {22})})  # .2 is gone: a merge would say so
    scan_id = harness.enqueue("alice")

    async def answering() -> None:
        """The engine answering without ever finishing a plan: the scan runs until cancelled."""
        while True:
            harness.engine.serve(harness.network.answer, finish=lambda plan: False)
            harness.live.wake()
            await asyncio.sleep(0.01)

    async def body() -> None:
        harness.live.admit()
        task = asyncio.get_running_loop().create_task(answering())
        try:
            await until(lambda: harness.live.running[scan_id].run.result.up_count >= 1)
            harness.live.finish(scan_id, "cancelled", None)
            await until(lambda: not harness.live.running and not harness.live.finishing)
        finally:
            task.cancel()

    run(running(harness, body, serve=False))
    assert harness.status(scan_id) == "cancelled"
    assert [d["ip"] for d in harness.store.result(scan_id)] == ["198.18.0.5"]  # it found a host
    assert _changes(harness, scan_id) == [] and _inventory(harness) == known
    assert not [e for e in _events(harness, scan_id) if e.startswith("change.")]


def test_a_merge_that_fails_leaves_nothing_of_it_and_the_scan_completed(harness: Harness) -> None:
    _scan(harness)
    known = _inventory(harness)
    # the merge's writes to the inventory come before its write of addresses, which now fails
    harness.store.call("break", lambda db: db.execute("DROP TABLE inventory_addresses"))
    harness.network = Network({"198.18.0.3": Device(mac(3), {22}), "198.18.0.5": Device(mac(5), {22})})
    scan_id = _scan(harness)
    assert harness.status(scan_id) == "completed" and len(harness.store.result(scan_id)) == 2
    assert _changes(harness, scan_id) == [] and _inventory(harness) == known
    assert not [e for e in _events(harness, scan_id) if e.startswith("change.")]
    assert harness.store.call("read", inventory.covered_of, scan_id) is not None  # the merge did run
