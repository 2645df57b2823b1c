"""The inventory's merge (store/inventory.py) on a real SQLite file: devices by site and identity,
the changes each scan makes with their events in the same transaction, addresses kept as
history, and only what a scan covered changed."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog

from netscand.scan import inventory as scan_inventory
from netscand.scan.events import Events
from netscand.scan.inventory import Inventory
from netscand.store import Store, changes, devices, inventory
from netscand.store.compare import Covered
from netscand.store.devices import Filters
from netscand.store.errors import StoreError
from netscand.store.threads import READERS, StoreThreads

BASE = int(ipaddress.IPv4Address("198.18.0.0"))
SLASH24 = ((BASE, BASE + 255),)
TCP = frozenset({21, 22, 80, 8080})
COVERED = Covered(SLASH24, TCP, frozenset(), services=True)
SITE = "123e4567-e89b-12d3-a456-426614174000"
MAC = "00:1B:21:5E:00:13"


def device(n: int, ports: dict[int, str | None], mac: str | None = None, **fields: Any) -> dict[str, Any]:
    """A device as a result lists it: open TCP ports with their OpenSSH version, if any."""
    return {"ip": f"198.18.0.{n}", "mac": mac, "hostname": None, "vendor": None, "os_guess": None,
            "ports": [{"port": p, "protocol": "tcp", "state": "open", "service": "SSH",
                       **({"product": "OpenSSH", "version": v} if v else {})} for p, v in sorted(ports.items())],
            **fields}


Merge = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def merge(store: Store) -> Merge:
    days = iter(range(1, 28))

    def run(found: list[dict[str, Any]], covered: Covered = COVERED, site_id: str | None = None,
            scan_id: str = "scan") -> list[dict[str, Any]]:
        return store.call("merge", inventory.merge, scan_id=scan_id, site_id=site_id, found=found,
                          covered=covered, at=f"2026-03-{next(days):02d}T10:00:00Z", owner="alice")
    return run


def kinds(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(c["kind"], c["ip"], c.get("port"), c["before"], c["after"]) for c in found]


def rows(store: Store, sql: str, *args: Any) -> list[dict[str, Any]]:
    return store.call("read", lambda db: list(db.query(sql, list(args))))


def test_the_network_changing_between_two_scans_is_exactly_its_changes(store: Store, merge: Merge) -> None:
    first = merge([device(1, {22: "9.2p1"}), device(2, {22: None}), device(3, {21: None, 22: None}),
                   device(4, {22: None}, mac=MAC)])
    assert [k[0] for k in kinds(first)] == ["device_appeared"] * 4
    second = merge([device(1, {22: "9.7p1"}), device(2, {22: None, 8080: None}), device(3, {22: None}),
                    device(200, {22: None}, mac=MAC)])
    assert kinds(second) == [
        ("version_changed", "198.18.0.1", 22, "9.2p1", "9.7p1"),
        ("port_opened", "198.18.0.2", 8080, None, "open"),
        ("port_closed", "198.18.0.3", 21, "open", None),
        ("address_changed", "198.18.0.200", None, "198.18.0.4", "198.18.0.200"),
    ]
    assert len(rows(store, "SELECT id FROM inventory")) == 4
    moved = store.call("read", devices.get, second[-1]["device_id"])
    assert moved is not None and moved["ip"] == "198.18.0.200" and moved["identity"] == f"mac:{MAC}"
    assert [a["ip"] for a in moved["addresses"]] == ["198.18.0.200", "198.18.0.4"]


def test_each_change_is_an_event_with_the_change_as_data(store: Store, merge: Merge) -> None:
    written = merge([device(1, {22: None})])
    events = rows(store, "SELECT type, scan_id, owner, data FROM events")
    assert [(e["type"], e["scan_id"], e["owner"]) for e in events] == [("change.device_appeared", "scan", "alice")]
    assert orjson.loads(events[0]["data"]) == written[0]
    assert store.call("read", changes.of_scan, "scan", 1, 10) == (written, 1)
    assert store.call("read", changes.of_device, written[0]["device_id"], 5) == written


def test_a_device_not_found_where_the_scan_looked_is_gone_once(store: Store, merge: Merge) -> None:
    merge([device(1, {22: None}), device(50, {22: None})])
    narrow = Covered(((BASE, BASE + 10),), TCP)
    assert kinds(merge([], narrow)) == [("device_gone", "198.18.0.1", None, "198.18.0.1", None)]
    assert merge([], narrow) == []  # gone already
    assert {r["ip"]: r["present"] for r in rows(store, "SELECT ip, present FROM inventory")} == {
        "198.18.0.1": 0, "198.18.0.50": 1}
    back = merge([device(1, {22: None, 80: None}), device(50, {22: None})])
    # what changed while it was away comes with it: its state takes it
    assert kinds(back) == [("device_appeared", "198.18.0.1", None, None, "198.18.0.1"),
                           ("port_opened", "198.18.0.1", 80, None, "open")]


def test_a_device_back_at_another_address_appears_there_and_moved(store: Store, merge: Merge) -> None:
    merge([device(1, {22: None}, mac=MAC)])
    merge([], Covered(((BASE, BASE + 10),), TCP))
    back = merge([device(7, {22: None}, mac=MAC)])
    assert kinds(back) == [("device_appeared", "198.18.0.7", None, None, "198.18.0.7"),
                           ("address_changed", "198.18.0.7", None, "198.18.0.1", "198.18.0.7")]


def test_a_moved_device_is_found_though_one_without_identity_took_its_address(store: Store, merge: Merge) -> None:
    first = merge([device(5, {22: None}, mac=MAC)])
    second = merge([device(5, {22: None}), device(6, {22: None}, mac=MAC)])
    assert kinds(second) == [("device_appeared", "198.18.0.5", None, None, "198.18.0.5"),
                             ("address_changed", "198.18.0.6", None, "198.18.0.5", "198.18.0.6")]
    assert second[1]["device_id"] == first[0]["device_id"]


def test_a_name_several_devices_share_identifies_none(store: Store, merge: Merge) -> None:
    generic = {"hostname": "dhcp.example"}
    merge([device(1, {22: None}, **generic), device(2, {80: None}, **generic)])
    assert sorted(r["identity"] for r in rows(store, "SELECT identity FROM inventory")) == [
        "ip:198.18.0.1", "ip:198.18.0.2"]
    # .1 gone, .2 found again: it stays at .2, it does not hop to the name's first address
    again = merge([device(2, {80: None}, **generic)])
    assert kinds(again) == [("device_gone", "198.18.0.1", None, "198.18.0.1", None)]


def test_a_device_found_as_it_was_only_has_its_last_seen_written(store: Store, merge: Merge) -> None:
    merge([device(1, {22: "9.2p1"}, mac=MAC)], scan_id="a")
    before = rows(store, "SELECT * FROM inventory")
    writes: list[str] = []
    store.call("trace", lambda db: db.conn.set_trace_callback(writes.append))
    try:
        assert merge([device(1, {22: "9.2p1"}, mac=MAC)], scan_id="b") == []
    finally:
        store.call("trace", lambda db: db.conn.set_trace_callback(None))
    after = rows(store, "SELECT * FROM inventory")
    assert [{**r, "last_seen": None, "last_scan_id": None} for r in after] == \
        [{**r, "last_seen": None, "last_scan_id": None} for r in before]
    assert after[0]["last_scan_id"] == "b" and after[0]["last_seen"] > before[0]["last_seen"]
    assert not any(w.startswith("INSERT INTO inventory ") for w in writes)


def test_the_same_address_at_two_sites_is_two_devices(store: Store, merge: Merge) -> None:
    merge([device(1, {22: None})])
    merge([device(1, {22: None})], site_id=SITE)
    sites = rows(store, "SELECT site_id, site_key FROM inventory")
    assert sorted((r["site_id"] or "", r["site_key"]) for r in sites) == [("", ""), (SITE, SITE)]
    assert kinds(merge([device(1, {})], site_id=SITE)) == [("port_closed", "198.18.0.1", 22, "open", None)]


def test_ports_not_probed_stay_and_ports_rows_follow_the_state(store: Store, merge: Merge) -> None:
    merge([device(1, {22: "9.2p1", 8080: None})])
    only_22 = Covered(SLASH24, frozenset({22}))  # no 8080, and no service detection
    assert merge([device(1, {22: None})], only_22) == []
    ports = rows(store, "SELECT port, product, version FROM inventory_ports ORDER BY port")
    assert ports == [{"port": 22, "product": "OpenSSH", "version": "9.2p1"},
                     {"port": 8080, "product": None, "version": None}]


def test_cves_index_and_severity_follow_a_matched_scan(store: Store, merge: Merge) -> None:
    def vulnerable(*ids: str) -> dict[str, Any]:
        found = device(1, {22: "9.2p1"})
        found["ports"][0] |= {"cpe": "cpe:2.3:a:openbsd:openssh:9.2p1", "cves": [
            {"id": i, "status": "vulnerable", "severity": "critical"} for i in ids]}
        return found

    matched = Covered(SLASH24, TCP, frozenset(), services=True, cves=True)
    merge([vulnerable("CVE-2024-6387")], matched)
    assert rows(store, "SELECT cve_id, severity FROM inventory_cves") == [{"cve_id": "CVE-2024-6387", "severity": 4}]
    assert rows(store, "SELECT max_severity FROM inventory") == [{"max_severity": 4}]
    fixed = merge([vulnerable()], matched)
    assert [(c["kind"], c["before"], c["cve"]) for c in fixed] == [
        ("cve_fixed", "CVE-2024-6387", {"id": "CVE-2024-6387", "severity": "critical"})]
    assert rows(store, "SELECT max_severity FROM inventory") == [{"max_severity": 0}]


def merger(store: Store) -> Inventory:
    io = StoreThreads()
    return Inventory(store, io, Events(store, io))


def test_merge_scan_reads_the_stored_result_site_and_owner(store: Store, make_scan: Callable[..., dict]) -> None:
    scan = make_scan(status="completed", site_id=SITE, owner="bob", cve={"cve_data": {"loaded": False, "note": "x"}})
    found = device(1, {22: "9.2p1"})
    found["ports"][0] |= {"cpe": "cpe:2.3:a:openbsd:openssh:9.2p1"}
    store.put_devices(scan["id"], [found])
    written = asyncio.run(merger(store).merge_scan(scan["id"], Covered(SLASH24, TCP, frozenset(), True, cves=True),
                                                   "2026-03-01T10:00:00Z"))
    assert [(c["kind"], c["site_id"], c["scan_id"]) for c in written] == [("device_appeared", SITE, scan["id"])]
    assert rows(store, "SELECT owner, site_id FROM events") == [{"owner": "bob", "site_id": SITE}]


def test_merge_scan_keeps_what_the_scan_covered(store: Store, make_scan: Callable[..., dict]) -> None:
    scan = make_scan(status="completed", cve={"cve_data": {"loaded": False, "note": "x"}})
    covered = Covered(SLASH24, TCP, frozenset({53}), True, cves=True)
    asyncio.run(merger(store).merge_scan(scan["id"], covered, "2026-03-01T10:00:00Z"))
    kept = store.call("read", inventory.covered_of, scan["id"])
    assert kept == Covered(SLASH24, TCP, frozenset({53}), True, cves=False)  # matched without data
    assert store.call("read", inventory.covered_of, "another") is None


def test_a_failing_merge_writes_nothing(store: Store, merge: Merge) -> None:
    bad = device(1, {22: None}) | {"ip": "not an address"}
    with pytest.raises(ValueError):
        merge([device(2, {22: None}), bad])
    assert rows(store, "SELECT count(*) AS n FROM inventory") == [{"n": 0}]
    assert rows(store, "SELECT count(*) AS n FROM events") == [{"n": 0}]


def test_changes_list_by_site_and_since(store: Store, merge: Merge) -> None:
    merge([device(1, {22: None})], scan_id="a")
    merge([device(1, {22: None})], site_id=SITE, scan_id="b")
    later = merge([device(2, {22: None})], Covered(((BASE + 2, BASE + 2),), TCP), site_id=SITE, scan_id="c")
    listed, total = store.call("read", changes.listing, SITE, None, 1, 10)
    assert total == 2 and [c["scan_id"] for c in listed] == ["b", "c"]
    assert store.call("read", changes.listing, None, later[0]["at"], 1, 10) == (later, 1)
    assert store.call("read", changes.listing, None, None, 2, 2)[0][0]["scan_id"] == "c"


def test_a_scans_changes_are_read_in_its_index_order(store: Store) -> None:
    plan = store.call("read", lambda db: [r["detail"] for r in db.query(
        "EXPLAIN QUERY PLAN SELECT * FROM changes WHERE scan_id = ? " + changes._SCAN_ORDER, ["scan", 10, 0])])
    assert any("changes_by_scan" in step for step in plan) and not any("TEMP B-TREE" in step for step in plan), plan


def test_a_plan_made_before_another_merge_of_its_site_is_not_written(store: Store, merge: Merge) -> None:
    merging = inventory.Merging("late", SITE, COVERED, "2026-03-20T10:00:00Z")

    def planned() -> inventory.Plan:
        return store.call("read", lambda db: inventory.plan(
            merging, inventory.version(db, SITE), inventory.concerned(db, SITE, COVERED, []), [device(1, {22: None})]))

    kept, stale = planned(), planned()
    merge([device(1, {22: None})], scan_id="other site")  # no site: SITE's version stays
    assert kinds(store.call("apply", inventory.apply, kept)) == [
        ("device_appeared", "198.18.0.1", None, None, "198.18.0.1")]
    with pytest.raises(inventory.Moved):  # planned at the version `kept` moved
        store.call("apply", inventory.apply, stale)
    fresh = planned()
    merge([device(1, {22: None})], site_id=SITE, scan_id="first")
    with pytest.raises(inventory.Moved):
        store.call("apply", inventory.apply, fresh)
    assert rows(store, "SELECT count(*) AS n FROM changes WHERE scan_id = 'late'") == [{"n": 1}]


def test_merges_of_one_site_at_once_take_turns(store: Store, make_scan: Callable[..., dict]) -> None:
    """Two scans of a site that found the same device completing together: whichever goes second is
    compared with what the first merged (without turns and the version, both would add the device,
    and the second write fail)."""
    scans = [make_scan(status="completed", site_id=SITE)["id"] for _ in range(2)]
    for scan_id in scans:
        store.put_devices(scan_id, [device(1, {22: None}, mac=MAC)])

    async def both() -> list[list[dict[str, Any]]]:
        merger = Inventory(store, StoreThreads(), Events(store, StoreThreads()))
        return await asyncio.gather(*(merger.merge_scan(s, COVERED, f"2026-03-2{n}T10:00:00Z")
                                      for n, s in enumerate(scans)))

    assert sorted(map(kinds, asyncio.run(both()))) == [[], [("device_appeared", "198.18.0.1", None, None, "198.18.0.1")]]
    assert rows(store, "SELECT count(*) AS n FROM inventory") == [{"n": 1}]


def test_new_devices_ids_sort_after_every_earlier_one(store: Store, merge: Merge) -> None:
    """UUIDv7s counting up: a merge's new devices append to the indexes of ids."""
    first = [c["device_id"] for c in merge([device(n, {22: None}) for n in (3, 1, 2)])]
    later = [c["device_id"] for c in merge([device(n, {22: None}) for n in (1, 2, 3, 9)])]
    assert [uuid.UUID(i).version for i in first + later] == [7] * 4
    assert len(later) == 1 and later[0] > max(first)


def test_keys_and_seqs_are_numbered_in_the_write_after_the_last(store: Store, merge: Merge) -> None:
    """New devices' port, CVE and address rows find their device by the key the write gives it,
    beside a known device's; each change's event carries its seq."""
    merge([device(1, {22: None}), device(2, {80: None})])
    written = merge([device(1, {22: None, 80: None}), device(2, {80: None}), device(5, {21: None, 8080: None})])
    assert rows(store, "SELECT i.ip, p.port FROM inventory_ports AS p JOIN inventory AS i ON i.key = p.device_key "
                       "ORDER BY i.ip, p.port") == [
        {"ip": f"198.18.0.{n}", "port": p} for n, p in ((1, 22), (1, 80), (2, 80), (5, 21), (5, 8080))]
    assert rows(store, "SELECT i.ip FROM inventory_addresses AS a JOIN inventory AS i ON i.key = a.device_key "
                       "ORDER BY i.ip") == [{"ip": f"198.18.0.{n}"} for n in (1, 2, 5)]
    assert [c["id"] for c in written] == [3, 4]
    events = rows(store, "SELECT data FROM events ORDER BY seq")
    assert [orjson.loads(e["data"]) for e in events[-2:]] == written
    assert store.call("read", changes.of_scan, "scan", 1, 10)[0][2:] == written


# -- the daemon's merge (scan/inventory.py): chunks, turns, retries, its own thread ---------------

def merged_rounds(store: Store) -> list[Any]:
    """Three completed scans of SITE merged as the daemon merges them; their changes, then the
    inventory (less its random ids). The third covers only .20-.31, where five devices moved: each
    is found by its MAC (by_identity), not by its address."""
    macs = [f"00:1B:21:00:00:{n:02X}" for n in range(10)]
    rounds = [([device(n, {22: "9.2p1"}, mac=macs[n]) for n in range(1, 8)], COVERED),
              ([device(n, {22: "9.3p1", 80: None}, mac=macs[n]) for n in range(2, 10)], COVERED),
              ([device(n + 20, {22: None}, mac=macs[n]) for n in range(1, 6)],
               Covered(((BASE + 20, BASE + 31),), TCP, frozenset(), services=True))]

    async def merge_all() -> list[Any]:
        merging, out = merger(store), []
        for n, (found, covered) in enumerate(rounds):
            scan_id = store.create_scan({"id": f"scan-{n}", "target": "198.18.0.0/24", "profile": "quick",
                                         "created_at": f"2026-03-0{n + 1}T10:00:00Z", "status": "completed",
                                         "site_id": SITE})["id"]
            store.put_devices(scan_id, found)
            out.append(kinds(await merging.merge_scan(scan_id, covered, f"2026-03-0{n + 1}T11:00:00Z")))
        return out

    return [*asyncio.run(merge_all()), rows(store, "SELECT identity, ip, present, first_seen, last_seen, state "
                                                   "FROM inventory ORDER BY identity")]


def test_merges_read_a_chunk_at_a_time_as_they_read_all_at_once(store: Store, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    whole = merged_rounds(store)
    assert [len(r) for r in whole] == [7, 15, 10, 9] and [k[0] for k in whole[2]].count("address_changed") == 5
    monkeypatch.setattr(scan_inventory, "CHUNK", 2)
    monkeypatch.setattr(inventory, "LOOKUP_CHUNK", 2)
    chunked = Store(tmp_path / "chunked.db")
    try:
        assert merged_rounds(chunked) == whole
    finally:
        chunked.close()


def completed(store: Store, scan_id: str, site_id: str | None = None) -> str:
    store.create_scan({"id": scan_id, "target": "198.18.0.0/24", "profile": "quick",
                       "created_at": "2026-03-01T10:00:00Z", "status": "completed", "site_id": site_id})
    store.put_devices(scan_id, [device(1, {22: None})])
    return scan_id


def test_a_plan_another_merge_moved_is_made_again(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    apply, moves = inventory.apply, iter([True])

    def moved_once(db: Any, planned: inventory.Plan) -> list[dict[str, Any]]:
        if next(moves, False):
            raise inventory.Moved(planned.merging.site_key)
        return apply(db, planned)

    monkeypatch.setattr(inventory, "apply", moved_once)
    with structlog.testing.capture_logs() as logs:
        written = asyncio.run(merger(store).merge_scan(completed(store, "a"), COVERED, "2026-03-01T11:00:00Z"))
    assert kinds(written) == [("device_appeared", "198.18.0.1", None, None, "198.18.0.1")]
    assert [e["event"] for e in logs] == ["inventory.merge_replanned"]


def test_a_merge_whose_site_keeps_moving_gives_up_and_says_so(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def always_moved(db: Any, planned: inventory.Plan) -> list[dict[str, Any]]:
        raise inventory.Moved(planned.merging.site_key)

    monkeypatch.setattr(inventory, "apply", always_moved)
    monkeypatch.setattr(scan_inventory, "covered_by", lambda spec: COVERED)
    with structlog.testing.capture_logs() as logs:
        asyncio.run(merger(store).merge(completed(store, "a"), None))  # type: ignore[arg-type]  # never raises
    events = [e["event"] for e in logs]
    assert events == ["inventory.merge_replanned"] * scan_inventory.ATTEMPTS + ["inventory.merge_failed"]
    assert "kept changing" in logs[-1]["error"] and rows(store, "SELECT count(*) AS n FROM changes") == [{"n": 0}]


@pytest.mark.parametrize(("reason", "tries"), [("database is locked by another process", 2),
                                               ("disk is full", 1)])
def test_a_busy_store_is_tried_again_a_full_disk_is_not(store: Store, monkeypatch: pytest.MonkeyPatch,
                                                        reason: str, tries: int) -> None:
    apply, calls = inventory.apply, []

    def busy_once(db: Any, planned: inventory.Plan) -> list[dict[str, Any]]:
        calls.append(planned)
        if len(calls) == 1:
            raise StoreError(f"cannot merge: {reason} (x.db)", reason)
        return apply(db, planned)

    monkeypatch.setattr(inventory, "apply", busy_once)
    monkeypatch.setattr(scan_inventory, "BACKOFF", 0.01)
    monkeypatch.setattr(scan_inventory, "covered_by", lambda spec: COVERED)
    with structlog.testing.capture_logs() as logs:
        asyncio.run(merger(store).merge(completed(store, "a"), None))  # type: ignore[arg-type]
    assert len(calls) == tries
    assert [e["event"] for e in logs] == (["inventory.merge_retried", "inventory.merged"] if tries == 2
                                          else ["inventory.merge_failed"])


def test_the_api_reads_while_merges_plan(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Merges plan on a thread of their own: however many are planning (of sites of their own, so
    they do not take turns), every reader is free."""
    planning, release = threading.Event(), threading.Event()
    plan = inventory.plan

    def slow_plan(*args: Any) -> inventory.Plan:
        planning.set()
        release.wait(10)
        return plan(*args)

    monkeypatch.setattr(inventory, "plan", slow_plan)
    scans = [completed(store, f"s{n}", str(uuid.uuid4())) for n in range(READERS + 1)]

    async def reads_while_planning() -> int:
        merging = merger(store)
        merges = [asyncio.create_task(merging.merge_scan(s, COVERED, "2026-03-01T11:00:00Z")) for s in scans]
        await asyncio.to_thread(planning.wait, 10)
        io = merging.io
        answered = await asyncio.wait_for(asyncio.gather(*(io.read(store.call, "t", devices.page, Filters(), 1, 10)
                                                           for _ in range(READERS * 2))), 5)
        release.set()
        await asyncio.gather(*merges)
        return len(answered)

    try:
        assert asyncio.run(reads_while_planning()) == READERS * 2
    finally:
        release.set()
