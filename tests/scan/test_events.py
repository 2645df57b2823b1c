"""Events of the scan layer: what a running scan's writes announce (each host and port once, its
progress when it moved), a write the store refuses (retried: its events are told once, later),
waiting and closing, and events going with their scan."""

from __future__ import annotations

import asyncio
import gc
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from netscand.scan.events import Announced, Events
from netscand.scan.limits import CurrentLimits
from netscand.scan.persist import Persist
from netscand.scan.retention import Retention
from netscand.store import Store, StoreError
from netscand.store import events as stored
from netscand.store.clock import utc_now
from netscand.store.threads import StoreThreads
from tests.api.conftest import make_limits

SCAN = "3f2b1c9e-8a4d-4e6f-9b1a-2c3d4e5f6a7b"


def device(ip: str, *ports: tuple[int, str], mac: str | None = None) -> dict[str, Any]:
    return {"ip": ip, "mac": mac, "ports": [{"port": p, "protocol": "tcp", "state": state,
                                             "service": "SSH" if p == 22 else None} for p, state in ports]}


def progress(percent: int, hosts: int, ports: int, eta: str | None = None) -> dict[str, Any]:
    return {"progress_percent": percent, "hosts_found": hosts, "ports_found": ports, "estimated_completion": eta}


def test_each_host_and_open_port_is_told_once_and_progress_when_it_moved() -> None:
    told = Announced(SCAN)
    first = told.news([device("198.18.0.1", (22, "open"), mac="02:00:C6:12:00:01")], progress(10, 1, 1))
    assert first == [
        ("host.up", {"scan_id": SCAN, "ip": "198.18.0.1", "mac": "02:00:C6:12:00:01"}),
        ("port.found", {"scan_id": SCAN, "ip": "198.18.0.1", "port": 22, "protocol": "tcp", "service": "SSH"}),
        ("scan.progress", {"id": SCAN, **progress(10, 1, 1)})]
    # The host again with a new port; a closed one (a final write lists them) is no news.
    again = told.news([device("198.18.0.1", (22, "open"), (80, "open"), (23, "closed"))], progress(10, 1, 1, "x"))
    assert again == [("port.found", {"scan_id": SCAN, "ip": "198.18.0.1", "port": 80, "protocol": "tcp"})]
    assert told.news([device("198.18.0.2")], None) == [("host.up", {"scan_id": SCAN, "ip": "198.18.0.2"})]
    assert told.news([], progress(20, 2, 2)) == [("scan.progress", {"id": SCAN, **progress(20, 2, 2)})]


class Refusing:
    """A store whose every call fails as a full disk does."""

    def call(self, doing: str, *_: Any, **__: Any) -> Any:
        raise StoreError(f"{doing}: the disk is full", "the disk is full")


class Flaky(Store):
    """A real store whose next calls of a function fail as given: "refused" (nothing written) or
    "lost" (written and committed, the answer a failure, as a commit whose reply never came)."""

    failing: dict[Any, list[str]]

    def call(self, doing: str, query: Any, *args: Any, **kwargs: Any) -> Any:
        how = self.failing.get(query, [])
        failing = how.pop(0) if how else None
        if failing == "refused":
            raise StoreError(f"{doing}: the disk is full", "the disk is full")
        result = super().call(doing, query, *args, **kwargs)
        if failing == "lost":
            raise StoreError(f"{doing}: disk I/O error", "disk I/O error")
        return result


@pytest.fixture
def flaky(tmp_path: Path) -> Store:
    opened = Flaky(tmp_path / "netscand.db")
    opened.failing = {}
    yield opened
    opened.close()


def told(store: Store) -> list[tuple[str, Any]]:
    return [(e["type"], e["data"].get("status") or e["data"].get("ip") or e["data"].get("port"))
            for e in store.call("x", stored.after, 0, 100)]


def test_a_state_write_the_store_refuses_is_retried_with_its_event_and_tells_it_once(flaky: Flaky) -> None:
    async def run() -> Persist:
        io = StoreThreads()
        persist = Persist(flaky, io, Events(flaky, io))
        flaky.create_scan({"id": SCAN, "target": "198.18.0.1", "profile": "quick", "owner": "alice"})
        flaky.failing[stored.update_scan] = ["refused", "lost"]
        persist.set_state(SCAN, "running", started_at=utc_now())  # refused: nothing written
        await io.drain()
        assert told(flaky) == [] and persist.unsaved[SCAN]["status"] == "running"
        persist.set_state(SCAN, "completed", finished_at=utc_now())  # both written, the answer lost
        await io.drain()
        assert persist.unsaved[SCAN]["status"] == "completed"
        persist.retry(SCAN)  # as the next tick does: written again, its events not again
        await io.drain()
        return persist

    with capture_logs() as logs:
        persist = asyncio.run(run())
    assert [e["event"] for e in logs if e["event"] == "scan.store_failed"] == ["scan.store_failed"] * 2
    assert told(flaky) == [("scan.state", "running"), ("scan.state", "completed")]
    assert flaky.get_scan(SCAN)["status"] == "completed"
    assert persist.unsaved == {} and persist.untold == {}


def test_a_host_whose_event_the_store_refused_is_told_with_its_next_write(flaky: Flaky) -> None:
    unhandled: list[dict[str, Any]] = []

    async def run() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: unhandled.append(context))
        io = StoreThreads()
        events = Events(flaky, io)
        flaky.create_scan({"id": SCAN, "target": "198.18.0.1", "profile": "quick"})
        flaky.failing[stored.insert_of_scan] = ["refused"]
        events.found(SCAN, [device("198.18.0.1", (22, "open"))], progress(10, 1, 1))
        await io.drain()
        await asyncio.sleep(0)  # the done callbacks
        assert told(flaky) == []
        events.found(SCAN, [device("198.18.0.1", (22, "open"))], progress(10, 1, 1))  # the final save, say
        events.found(SCAN, [device("198.18.0.1", (22, "open"))], progress(10, 1, 1))  # nothing new
        await io.drain()
        gc.collect()  # a future whose exception nobody took is reported as it goes

    with capture_logs() as logs:
        asyncio.run(run())
    failed = [entry for entry in logs if entry["event"] == "events.store_failed"]
    assert [entry["events"] for entry in failed] == ["host.up,port.found,scan.progress"]
    assert "the disk is full" in failed[0]["error"] and unhandled == []
    assert told(flaky) == [("host.up", "198.18.0.1"), ("port.found", "198.18.0.1"), ("scan.progress", None)]


def test_a_wait_returns_at_once_after_a_missed_wake_and_for_good_once_closed() -> None:
    async def run() -> None:
        events = Events(Refusing(), StoreThreads())  # type: ignore[arg-type]
        seen = events.written
        assert await events.wait(0.05, seen) is False  # timed out
        events.wake()  # while a reader was reading, say
        assert await events.wait(10, seen) is True
        waiting = asyncio.ensure_future(events.wait(10, events.written))
        await asyncio.sleep(0)
        events.close()
        assert await waiting is True
        assert await events.wait(10) is True

    asyncio.run(asyncio.wait_for(run(), 5))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = Store(tmp_path / "netscand.db")
    yield opened
    opened.close()


def scan(store: Store, status: str, **fields: Any) -> str:
    row = store.create_scan({"id": fields.pop("id", SCAN), "target": "198.18.0.1", "profile": "quick",
                             "created_at": utc_now(), "owner": "alice", **fields})
    store.update_scan(row["id"], status=status, finished_at=utc_now(-timedelta(days=40)))
    return row["id"]


def test_a_scans_events_carry_its_owner_and_site_and_go_with_it(store: Store) -> None:
    site = "123e4567-e89b-12d3-a456-426614174000"
    scan_id = scan(store, "completed", site_id=site)
    assert store.call("x", stored.insert_of_scan, scan_id, [("host.up", {"ip": "198.18.0.1"})] * 3) == 3
    assert store.call("x", stored.insert_of_scan, "no-such-scan", [("host.up", {})]) == 0
    [first, *_] = store.call("x", stored.after, 0, 10, owner="alice")
    assert (first["scan_id"], first["site_id"], first["owner"]) == (scan_id, site, "alice")
    assert store.call("x", stored.after, 0, 10, owner="bob") == []

    async def delete() -> bool:
        io = StoreThreads()
        return await Retention(store, io, Persist(store, io, Events(store, io)), CurrentLimits(make_limits())).delete(scan_id)

    assert asyncio.run(delete()) is True
    assert store.call("x", stored.after, 0, 10) == []


def test_old_events_of_no_scan_go_at_the_retention_age(store: Store) -> None:
    old = utc_now(-timedelta(days=31))
    store.call("x", stored.insert, "change.device_gone", {}, at=old)
    store.call("x", stored.insert, "change.device_gone", {}, scan_id="deleted-long-ago", at=old)
    recent = store.call("x", stored.insert, "change.device_gone", {})
    kept = scan(store, "running", id="123e4567-e89b-12d3-a456-426614174001")
    store.call("x", stored.insert, "scan.state", {}, scan_id=kept, at=old)

    async def expire() -> int:
        io = StoreThreads()
        return await Retention(store, io, Persist(store, io, Events(store, io)), CurrentLimits(make_limits(retention_days=30))).expire()

    asyncio.run(expire())
    assert [(e["seq"], e["scan_id"]) for e in store.call("x", stored.after, 0, 10)] == [(recent, None), (4, kept)]


def test_an_owners_read_costs_the_same_whatever_other_owners_wrote(store: Store) -> None:
    # SQLite's virtual machine steps, counted: a read through an index, not a range over every event.
    mine = scan(store, "running")
    store.call("x", stored.insert_of_scan, mine, [("host.up", {"ip": "198.18.0.1"})])

    def steps() -> int:
        count = 0

        def tick() -> int:
            nonlocal count
            count += 1
            return 0

        store._db.conn.set_progress_handler(tick, 10)
        try:
            assert [e["scan_id"] for e in store.call("x", stored.after, 0, 200, owner="alice")] == [mine]
        finally:
            store._db.conn.set_progress_handler(None, 10)
        return count

    alone = steps()
    theirs = scan(store, "running", id="123e4567-e89b-12d3-a456-426614174002", owner="bob")
    store.call("x", stored.insert_of_scan, theirs, [("port.found", {"port": p}) for p in range(20000)])
    assert steps() <= alone + 5
