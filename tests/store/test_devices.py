"""Device queries over an inventory built by the real merge: every filter, alone and combined, is
held against a plain Python filter of the same rows, on pages found both ways (walking the
listing index and sorting the matches); each query's plan uses the indexes; one device reads back
with its ports, CVEs, addresses and newest changes."""

from __future__ import annotations

import ipaddress
import random
import uuid
from typing import Any

import pytest
from sqlite_utils import Database

from netscand.store import Store, devices, sites
from netscand.store.compare import Covered
from netscand.store.devices import SEVERITY_RANKS, Filters
from netscand.store.inventory import merge

NET = ipaddress.ip_network("198.18.0.0/24")
SERVICES = [(22, "tcp", "ssh", "OpenSSH", "9.2p1"), (80, "tcp", "http", "nginx", "1.22.1"),
            (443, "tcp", "https", "Apache httpd", "2.4.57"), (161, "udp", "snmp", "net-snmp", "5.9"),
            (53, "udp", "domain", None, None), (9100, "tcp", "jetdirect", None, None)]
OSES = ["Linux 6.x", "Windows 11", "FreeBSD 13", None]
VENDORS = ["Dell Inc.", "Hewlett Packard", "Raspberry Pi 100%_Trading", None]
CVES = [("CVE-2024-6387", "high"), ("CVE-2023-0001", "critical"), ("CVE-2022-1234", "low"), ("CVE-2021-9999", "medium")]
COVERED = Covered(((int(NET.network_address), int(NET.broadcast_address)),), frozenset({22, 80, 443, 9100}),
                  frozenset({53, 161}), services=True, cves=True)


def found_device(rnd: random.Random, n: int) -> dict[str, Any]:
    ports = []
    for port, protocol, service, product, version in rnd.sample(SERVICES, rnd.randint(0, 3)):
        entry: dict[str, Any] = {"port": port, "protocol": protocol, "state": "open", "service": service}
        entry |= {k: v for k, v in (("product", product), ("version", version)) if v}
        if product and rnd.random() < 0.4:
            entry["cves"] = [{"id": cve, "status": "vulnerable", "severity": severity, "cvss": 5.0}
                             for cve, severity in rnd.sample(CVES, rnd.randint(1, 2))]
        ports.append(entry)
    return {"ip": str(NET[n]), "mac": f"00:1B:21:00:00:{n:02X}", "hostname": rnd.choice([f"host-{n}.lab", None]),
            "vendor": rnd.choice(VENDORS), "os_guess": rnd.choice(OSES), "ports": ports}


@pytest.fixture
def inventory(store: Store) -> dict[str, Any]:
    """Two sites and no site, each merged twice: the second scan lost some devices (present false)
    and saw the rest later (last_seen)."""
    rnd = random.Random(7)
    made = {"a": store.call("t", sites.create, "a")["id"], "b": store.call("t", sites.create, "b")["id"], "none": None}
    for site_id in made.values():
        found = [found_device(rnd, n) for n in sorted(rnd.sample(range(1, 255), 60))]
        for at, devices_found in (("2026-11-01T00:00:00Z", found), ("2026-12-01T00:00:00Z", found[::2])):
            store.call("t", merge, scan_id=str(uuid.uuid4()), site_id=site_id, found=devices_found,
                       covered=COVERED, at=at)
    return made


def every_device(db: Database) -> list[dict[str, Any]]:
    rows = list(db.query("SELECT * FROM inventory"))
    for row in rows:
        row["ports"] = list(db.query("SELECT * FROM inventory_ports WHERE device_key = ?", [row["key"]]))
        row["cves"] = list(db.query("SELECT * FROM inventory_cves WHERE device_key = ?", [row["key"]]))
    return rows


def matches(d: dict[str, Any], f: Filters) -> bool:
    def contains(value: str | None, part: str) -> bool:
        return value is not None and part.lower() in value.lower()

    ports = [p for p in d["ports"] if f.port is None or (p["port"], p["protocol"]) in
             {(f.port, f.protocol or "tcp"), (f.port, f.protocol or "udp")}]
    return all((
        f.site_id is None or d["site_key"] == f.site_id,
        f.network is None or ipaddress.ip_address(d["ip"]) in f.network,
        f.text is None or contains(d["hostname"], f.text) or contains(d["vendor"], f.text),
        f.port is None or bool(ports),
        f.service is None or any((p["service"] or "").lower() == f.service.lower() for p in d["ports"]),
        f.product is None or any((p["product"] or "").lower() == f.product.lower() for p in d["ports"]),
        f.os is None or contains(d["os"], f.os),
        f.cve is None or any(c["cve_id"] == f.cve for c in d["cves"]),
        f.min_severity is None or d["max_severity"] >= f.min_severity,
        f.seen_since is None or d["last_seen"] >= f.seen_since,
        f.not_seen_since is None or d["last_seen"] < f.not_seen_since,
        f.present is None or bool(d["present"]) == f.present,
    ))


def expected(rows: list[dict[str, Any]], f: Filters) -> list[str]:
    return [d["id"] for d in sorted((d for d in rows if matches(d, f)), key=lambda d: (d["site_key"], d["ip_key"], d["id"]))]


def filter_sets(made: dict[str, Any]) -> list[Filters]:
    return [
        Filters(), Filters(site_id=made["a"]), Filters(site_id=""), Filters(network=ipaddress.ip_network("198.18.0.0/25")),
        Filters(network=ipaddress.ip_network("198.18.0.7/32")), Filters(text="HOST-1"), Filters(text="100%_"),
        Filters(text="%"), Filters(port=22), Filters(port=161, protocol="udp"), Filters(port=161, protocol="tcp"),
        Filters(service="SSH"), Filters(product="apache httpd"), Filters(os="linux"), Filters(cve="CVE-2024-6387"),
        Filters(min_severity=SEVERITY_RANKS["high"]), Filters(min_severity=1), Filters(seen_since="2026-11-15T00:00:00Z"),
        Filters(not_seen_since="2026-11-15T00:00:00Z"), Filters(present=False), Filters(present=True),
        Filters(site_id=made["b"], port=80, os="windows"), Filters(text="dell", min_severity=2, present=True),
        Filters(network=ipaddress.ip_network("198.18.0.128/25"), service="https", cve="CVE-2023-0001"),
        Filters(network=ipaddress.ip_network("2001:db8::/32")), Filters(port=22, service="ssh", product="OpenSSH"),
        Filters(product="nginx", present=False), Filters(site_id=made["a"], cve="CVE-2022-1234"),
        Filters(text="host", port=80), Filters(cve="CVE-2021-9999", min_severity=4), Filters(port=53, os="bsd"),
        Filters(port=22, network=ipaddress.ip_network("198.18.0.0/25")),
        Filters(service="http", network=ipaddress.ip_network("198.18.0.0/23")),
    ]


def test_every_filter_finds_what_a_plain_filter_of_the_rows_finds(store: Store, inventory: dict[str, Any]) -> None:
    rows = store.call("t", every_device)
    assert len(rows) == 180 and any(not d["present"] for d in rows) and any(d["max_severity"] for d in rows)
    for f in filter_sets(inventory):
        want = expected(rows, f)
        # Pages of 1 from the start walk the listing; deep or large pages sort the matches.
        for per_page in (1, 7, 100):
            got: list[str] = []
            for number in range(1, len(want) // per_page + 2):
                page, total = store.call("t", devices.page, f, number, per_page)
                assert total == len(want), f
                got += [d["id"] for d in page]
            assert got == want, (f, per_page)


def test_a_page_past_the_last_is_empty(store: Store, inventory: dict[str, Any]) -> None:
    assert store.call("t", devices.page, Filters(), 1000, 100) == ([], 180)
    with pytest.raises(ValueError):
        store.call("t", devices.page, Filters(), 0, 10)


def test_a_listed_device_has_its_fields_and_open_ports(store: Store, inventory: dict[str, Any]) -> None:
    page, _ = store.call("t", devices.page, Filters(site_id=inventory["a"], port=22), 1, 1)
    (device,) = page
    assert device.keys() == {"id", "site_id", "identity", "ip", "mac", "mac_randomized", "hostname", "vendor", "os",
                             "present", "max_severity", "first_seen", "last_seen", "last_scan_id", "ports"}
    assert device["site_id"] == inventory["a"] and device["identity"] == f"mac:{device['mac']}"
    assert device["max_severity"] in (None, *SEVERITY_RANKS) and isinstance(device["present"], bool)
    assert [p["port"] for p in device["ports"]] == sorted(p["port"] for p in device["ports"])
    assert {"port": 22, "protocol": "tcp", "service": "ssh", "product": "OpenSSH", "version": "9.2p1"} in device["ports"]


def test_one_device_with_its_history(store: Store) -> None:
    site = store.call("t", sites.create, "moves")["id"]
    host = {"ip": "198.18.0.5", "mac": "00:1B:21:00:00:05", "hostname": None, "vendor": None, "os_guess": None,
            "ports": [{"port": 22, "protocol": "tcp", "state": "open", "service": "ssh", "product": "OpenSSH",
                       "version": "9.2p1", "cves": [{"id": "CVE-2024-6387", "status": "vulnerable",
                                                     "severity": "high", "cvss": 8.1}]}]}
    moved = host | {"ip": "198.18.0.6"}
    for day, found in enumerate((host, moved), start=1):
        store.call("t", merge, scan_id=str(uuid.uuid4()), site_id=site, found=[found], covered=COVERED,
                   at=f"2026-12-0{day}T00:00:00Z")
    (listed,), _ = store.call("t", devices.page, Filters(site_id=site), 1, 10)
    device = store.call("t", devices.get, listed["id"])
    assert device["ip"] == "198.18.0.6" and device["max_severity"] == "high"
    assert device["cves"] == [{"id": "CVE-2024-6387", "severity": "high", "port": 22, "protocol": "tcp"}]
    assert [a["ip"] for a in device["addresses"]] == ["198.18.0.6", "198.18.0.5"]
    assert [c["kind"] for c in device["changes"]][:2] == ["address_changed", "device_appeared"][:2]
    assert device["changes"][0]["before"] == "198.18.0.5" and device["more_changes"] is False
    assert store.call("t", devices.get, str(uuid.uuid4())) is None


def test_a_device_shows_its_newest_changes_only(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "MAX_CHANGES", 2)
    site = store.call("t", sites.create, "flaps")["id"]
    host = {"ip": "198.18.0.5", "mac": "00:1B:21:00:00:05", "ports": []}
    for day in range(1, 5):  # appeared, gone, appeared, gone
        store.call("t", merge, scan_id=str(uuid.uuid4()), site_id=site, found=[host] if day % 2 else [],
                   covered=COVERED, at=f"2026-12-0{day}T00:00:00Z")
    (listed,), _ = store.call("t", devices.page, Filters(site_id=site), 1, 10)
    device = store.call("t", devices.get, listed["id"])
    assert [(c["kind"], c["at"][:10]) for c in device["changes"]] == [("device_gone", "2026-12-04"),
                                                                       ("device_appeared", "2026-12-03")]
    assert device["more_changes"] is True


def plan(db: Database, sql: str, args: list[Any]) -> list[str]:
    return [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", args)]


def plans(db: Database, f: Filters) -> list[str]:
    """Every step of the plans of the queries a page of `f` may take, whichever filter it reads first."""
    query, queries = devices._Query.of(f), []
    for walking in (False, True):
        where, args = query.where(walking)
        index = "INDEXED BY inventory_listing" if walking else ""
        queries.append((f"SELECT id FROM inventory AS i {index} {where} ORDER BY site_key, ip_key, id LIMIT 9", args))
    where, args = devices._where([*query.own, *map(devices._has, query.joined)])
    queries.append((f"SELECT count(*) FROM inventory AS i {where}", args))
    queries += [query.driven(join, "DISTINCT t.device_key") for join in query.joined]
    return [step for sql, args in queries for step in plan(db, sql, args)]


def test_every_query_reads_indexes_never_the_table(store: Store, inventory: dict[str, Any]) -> None:
    # A full scan of `inventory` reads every row's JSON state; every plan must use an index instead.
    for f in filter_sets(inventory):
        steps = store.call("t", plans, f)
        assert not [s for s in steps if s.startswith("SCAN") and "INDEX" not in s], (f, steps)


def test_a_count_driven_by_ports_or_cves_reads_no_device_row(store: Store, inventory: dict[str, Any]) -> None:
    # Each device a port's or CVE's index found is looked up once: in inventory_filtered alone,
    # whatever the device's own filters (an address among them), never in its row.
    driven = [f for f in filter_sets(inventory) if devices._Query.of(f).joined and devices._Query.of(f).own]
    assert any(f.network and f.port for f in driven) and any(f.network and f.service for f in driven)
    for f in driven:
        query = devices._Query.of(f)
        for join in query.joined:
            steps = store.call("t", plan, *query.driven(join, "DISTINCT t.device_key"))
            lookups = [s for s in steps if s.startswith("SEARCH i ")]
            assert len(lookups) == 1, (f, steps)
            assert lookups[0].startswith("SEARCH i USING COVERING INDEX inventory_filtered (key=?"), (f, steps)
