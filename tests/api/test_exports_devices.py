"""GET /api/v1/devices?format=csv|jsonl: every device of the inventory matching the filters,
streamed, over an inventory the real merge wrote."""

from __future__ import annotations

import csv
import io
import ipaddress
import uuid
from dataclasses import replace
from typing import Any

import httpx
import orjson
import pytest

from netscand.api import exports
from netscand.store import devices
from netscand.store.devices import Filters
from netscand.store.compare import Covered
from netscand.store.inventory import merge
from tests.api.conftest import Api, assert_problem

DEVICES = "/api/v1/devices"
HOSTS = exports.EXPORT_PAGE + 5  # two pages
COVERED = Covered(((0xC6120000, 0xC612FFFF),), frozenset({22, 80}), frozenset(), services=True, cves=False)


def host(n: int) -> dict[str, Any]:
    ports = [{"port": 22, "protocol": "tcp", "state": "open", "service": "ssh", "product": "OpenSSH",
              "version": "9.2p1"}] if n % 2 else []
    return {"ip": f"198.18.{n // 250}.{n % 250 + 1}", "mac": f"00:1B:21:00:{n // 256:02X}:{n % 256:02X}",
            "hostname": "@SUM(1+1)" if n == 3 else f"host-{n}.lab", "vendor": "Dell Inc.", "os_guess": "Linux",
            "ports": ports}


@pytest.fixture(scope="module")
def inventory(module_api: Api) -> Api:
    module_api.store.call("t", merge, scan_id=str(uuid.uuid4()), site_id=None, found=[host(n) for n in range(HOSTS)],
                          covered=COVERED, at="2026-12-01T10:00:00Z")
    return module_api


def every_device(client: httpx.Client, **params: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    page = 1
    while batch := client.get(DEVICES, params={**params, "page": str(page), "per_page": "100"}).json()["devices"]:
        found += batch
        page += 1
    return found


def test_jsonl_is_every_device_as_the_list_has_it(inventory: Api) -> None:
    unix = inventory.unix()
    r = unix.get(DEVICES, params={"format": "jsonl"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    assert r.headers["content-disposition"] == 'attachment; filename="netscand-devices.jsonl"'
    assert [orjson.loads(line) for line in r.content.splitlines()] == every_device(unix)
    filtered = unix.get(DEVICES, params={"format": "jsonl", "port": "22"}).content.splitlines()
    assert [orjson.loads(line) for line in filtered] == every_device(unix, port="22")
    assert len(filtered) == HOSTS // 2


def test_csv_is_one_open_port_per_line(inventory: Api) -> None:
    unix = inventory.unix()
    r = unix.get(DEVICES, params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(r.text, newline="")))
    devices = every_device(unix)
    assert [(row["device_id"], row["ip"], row["port"]) for row in rows] == \
        [(d["id"], d["ip"], str(p["port"])) for d in devices for p in d["ports"] or [{"port": ""}]]
    assert rows[0]["present"] == "true" and rows[0]["first_seen"] == "2026-12-01T10:00:00Z"
    assert {row["hostname"] for row in rows if row["hostname"].startswith("'")} == {"'@SUM(1+1)"}


def test_a_devices_export_is_not_paged(inventory: Api) -> None:
    unix = inventory.unix()
    assert_problem(unix.get(DEVICES, params={"format": "csv", "per_page": "5"}), 422, field_="per_page")
    assert_problem(unix.get(DEVICES, params={"format": "nmap-xml"}), 422, field_="format")


@pytest.mark.parametrize("filters", [
    Filters(), Filters(port=22), Filters(text="host-1"), Filters(port=22, text="host-1"),
    Filters(network=ipaddress.ip_network("198.18.0.0/24"), service="ssh"), Filters(cve="CVE-0000-0000"),
])
def test_keyed_pages_are_the_list_whichever_way_they_are_read(inventory: Api, filters: Filters) -> None:
    listed = [d["id"] for d in inventory.store.call("t", devices.page, filters, 1, HOSTS)[0]]
    plan = inventory.store.call("t", devices.listing, filters, 7)
    for walk in (True, False):  # walking the listing index in order, or finding and sorting the matches
        walked = replace(plan, walk=walk)
        read: list[str] = []
        after: devices.Key | None = None
        while True:
            page, after = inventory.store.call("t", devices.page_after, walked, after, 7)
            read += [d["id"] for d in page]
            if len(page) < 7:
                break
        assert read == listed


def test_an_export_counts_once_not_per_page(inventory: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    counted: list[int] = []
    count = devices._Query.count
    monkeypatch.setattr(devices._Query, "count", lambda *a: counted.append(1) or count(*a))
    lines = inventory.unix().get(DEVICES, params={"format": "jsonl"}).content.splitlines()
    assert len(lines) == HOSTS > exports.EXPORT_PAGE and counted == [1]


def test_a_merge_during_an_export_neither_repeats_nor_skips_a_device(api: Api) -> None:
    api.store.call("t", merge, scan_id=str(uuid.uuid4()), site_id=None, found=[host(n) for n in range(10)],
                   covered=COVERED, at="2026-12-01T10:00:00Z")
    before = [d["id"] for d in api.store.call("t", devices.page, Filters(), 1, 100)[0]]
    pages = exports.device_pages(api.store, Filters(), size=4)
    read = [d["id"] for d in next(pages)]
    # A device appears in front of the pages read (an address below every other), which shifted
    # an offset's pages by one: the last device read would come again.
    first = {**host(99), "ip": "198.18.0.0", "mac": "00:1B:21:00:99:99", "hostname": "new.lab"}
    api.store.call("t", merge, scan_id=str(uuid.uuid4()), site_id=None, found=[first],
                   covered=Covered(((0xC6120000, 0xC6120000),), frozenset({22})), at="2026-12-01T11:00:00Z")
    read += [d["id"] for page in pages for d in page]
    assert read == before
