"""GET /api/v1/scans/{id}/result?format=nmap-xml|csv|jsonl over the real API: the whole result,
streamed a page at a time, with its media type and file name, read back by its consumers
(xmllint against nmap's DTD, python-libnmap, csv, JSON), every answer checked against the
document (conftest's conform)."""

from __future__ import annotations

import csv
import io
import ipaddress
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from libnmap.parser import NmapParser

from netscand.api.exports import EXPORT_PAGE
from netscand.scan.cves import NO_DATA
from netscand.store import StoreError, inventory, results
from netscand.store.compare import Covered
from tests.api.conftest import Api, assert_problem, start

DTD = "/usr/share/nmap/nmap.dtd"
DEVICES = EXPORT_PAGE * 2 + 17  # three pages
MEDIA = {"nmap-xml": "application/xml", "csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
EXTENSIONS = {"nmap-xml": "xml", "csv": "csv", "jsonl": "jsonl"}


def device(i: int) -> dict[str, Any]:
    """Devices as a scan's end saves them; every seventh one with a hostile name and banner."""
    hostile = i % 7 == 0
    return {"ip": f"198.18.{i // 250}.{i % 250 + 1}", "mac": f"02:00:C6:12:{i // 256:02X}:{i % 256:02X}",
            "hostname": "=cmd|'/C calc'!A0\x1b]" if hostile else f"host{i}.lab", "vendor": "Acme",
            "os_guess": "Linux", "extra": {"os_confidence": 0.9, "not_shown": {"closed": 998}},
            "ports": [{"port": 22, "protocol": "tcp", "state": "open", "service": "SSH", "product": "OpenSSH",
                       "version": "9.2p1", "banner": "SSH-2.0-\x00\x07<x>&" if hostile else "SSH-2.0-OpenSSH_9.2p1",
                       "cpe": "cpe:2.3:a:openbsd:openssh:9.2p1:*:*:*:*:*:*:*"},
                      {"port": 80, "protocol": "tcp", "state": "open", "service": "HTTP"}]}


def finished_scan(api: Api, client: httpx.Client, devices: int = DEVICES, **fields: Any) -> str:
    scan_id = start(client).json()["id"]
    assert client.post(f"/api/v1/scans/{scan_id}/stop").status_code == 200
    api.store.put_devices(scan_id, [device(i) for i in range(devices)])
    api.store.update_scan(scan_id, status="completed", started_at="2026-12-07T09:00:00Z", **fields)
    return scan_id


def exported(client: httpx.Client, scan_id: str, fmt: str) -> httpx.Response:
    r = client.get(f"/api/v1/scans/{scan_id}/result", params={"format": fmt})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == MEDIA[fmt]
    assert r.headers["content-disposition"] == f'attachment; filename="netscand-{scan_id}.{EXTENSIONS[fmt]}"'
    assert r.headers["transfer-encoding"] == "chunked"  # streamed, not built whole
    return r


def json_devices(client: httpx.Client, scan_id: str) -> list[dict[str, Any]]:
    return client.get(f"/api/v1/scans/{scan_id}/result").json()["devices"]


def test_nmap_xml_is_the_whole_result_valid_against_nmaps_dtd(api: Api, unix: httpx.Client) -> None:
    scan_id = finished_scan(api, unix)
    body = exported(unix, scan_id, "nmap-xml").content
    done = subprocess.run(["xmllint", "--noout", "--dtdvalid", DTD, "-"], input=body, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[:2000]
    report = NmapParser.parse_fromstring(body.decode())
    devices = json_devices(unix, scan_id)
    assert [h.address for h in report.hosts] == [d["ip"] for d in devices]
    assert report.hosts_up == DEVICES and report.summary.endswith(f"{DEVICES} hosts up")
    for host, d in zip(report.hosts, devices, strict=True):
        name = d["hostname"].replace("\x1b", "\ufffd")  # what XML can't hold
        assert (host.mac, host.vendor, host.hostnames) == (d["mac"], d["vendor"], [name])
        assert [(m.name, m.accuracy) for m in host.os.osmatches] == [("Linux", 90)]
        assert [(s.port, s.state, s.service, s.service_dict.get("version")) for s in host.services] == \
            [(22, "open", "ssh", "9.2p1"), (80, "open", "http", None)]


def test_csv_is_one_port_per_line_for_every_device(api: Api, unix: httpx.Client) -> None:
    scan_id = finished_scan(api, unix)
    rows = list(csv.DictReader(io.StringIO(exported(unix, scan_id, "csv").text, newline="")))
    devices = json_devices(unix, scan_id)
    assert [(r["ip"], r["port"]) for r in rows] == [(d["ip"], str(p["port"])) for d in devices for p in d["ports"]]
    assert {r["scan_id"] for r in rows} == {scan_id}
    hostile = [r["hostname"] for r in rows if r["hostname"].startswith("'")]
    assert hostile and set(hostile) == {"'=cmd|'/C calc'!A0\ufffd]"}  # a formula, or ESC, no more


def test_jsonl_is_each_device_of_the_json_result(api: Api, unix: httpx.Client) -> None:
    scan_id = finished_scan(api, unix)
    lines = exported(unix, scan_id, "jsonl").content.splitlines()
    assert [orjson.loads(line) for line in lines] == [{"scan_id": scan_id, **d} for d in json_devices(unix, scan_id)]


def test_an_empty_or_unfinished_scan_exports_what_it_has(api: Api, unix: httpx.Client) -> None:
    scan_id = start(unix).json()["id"]  # queued: nothing found yet
    assert exported(unix, scan_id, "jsonl").content == b""
    assert exported(unix, scan_id, "csv").text.startswith("scan_id,ip,")
    report = NmapParser.parse_fromstring(exported(unix, scan_id, "nmap-xml").text)
    assert report.hosts == [] and report.hosts_total == 0
    assert report.get_raw_data()["_runstats"]["finished"]["errormsg"] == "scan queued: the result is partial"


@pytest.mark.parametrize("paging", ["page", "per_page"])
def test_an_export_is_not_paged(unix: httpx.Client, paging: str) -> None:
    scan_id = start(unix).json()["id"]
    r = unix.get(f"/api/v1/scans/{scan_id}/result", params={"format": "csv", paging: "1"})
    assert paging in assert_problem(r, 422, field_=paging)["detail"]
    assert unix.get(f"/api/v1/scans/{scan_id}/result", params={"format": "json", paging: "1"}).status_code == 200


def test_an_unknown_format_is_refused(unix: httpx.Client) -> None:
    scan_id = start(unix).json()["id"]
    assert_problem(unix.get(f"/api/v1/scans/{scan_id}/result", params={"format": "pdf"}), 422, field_="format")


def test_an_export_sees_only_what_the_caller_may(api: Api) -> None:
    with api.tcp(api.token("scan", "alice")) as alice, api.tcp(api.token("scan", "bob")) as bob, \
            api.tcp(api.token("read")) as reader, api.tcp() as anonymous:
        scan_id = finished_scan(api, alice, devices=3)
        assert exported(alice, scan_id, "csv").text.count("\n") == 1 + 3 * 2
        assert_problem(bob.get(f"/api/v1/scans/{scan_id}/result", params={"format": "csv"}), 404)
        assert exported(reader, scan_id, "jsonl").content.count(b"\n") == 3
        assert_problem(anonymous.get(f"/api/v1/scans/{scan_id}/result", params={"format": "csv"}), 401)
    assert_problem(api.unix().get("/api/v1/scans/00000000-0000-0000-0000-000000000000/result",
                                  params={"format": "nmap-xml"}), 404)


def test_nmap_xml_counts_the_addresses_a_completed_scan_probed(api: Api, unix: httpx.Client) -> None:
    scan_id = finished_scan(api, unix, devices=3)
    network = ipaddress.IPv4Network("198.18.0.0/24")
    covered = Covered(((int(network.network_address), int(network.broadcast_address)),))
    api.store.call("t", inventory.keep_covered, scan_id, covered)  # as its merge keeps it
    report = NmapParser.parse_fromstring(exported(unix, scan_id, "nmap-xml").text)
    assert (report.hosts_up, report.hosts_down, report.hosts_total) == (3, 253, 256)


def test_a_running_scans_export_goes_on_after_the_last_address_given(api: Api, unix: httpx.Client) -> None:
    scan_id = start(unix).json()["id"]
    api.store.put_devices(scan_id, [device(i) for i in (1, 3, 5, 7)])
    pages = api.orchestrator.persist.result_pages(scan_id, 2)
    assert [d["ip"] for d in next(pages)] == ["198.18.0.2", "198.18.0.4"]
    # Found meanwhile, one in front of the page read and one behind it: the next page starts
    # after the last address given, so the first is not in the export and the second is.
    api.store.put_devices(scan_id, [device(0), device(4)])
    assert [d["ip"] for page in pages for d in page] == ["198.18.0.5", "198.18.0.6", "198.18.0.8"]


def test_rematch_answers_an_export_too(api: Api, unix: httpx.Client) -> None:
    scan_id = finished_scan(api, unix, devices=2, cve={"cve_data": {"loaded": False, "note": NO_DATA}})
    r = unix.post(f"/api/v1/scans/{scan_id}/rematch", params={"format": "jsonl"})
    assert r.status_code == 200 and r.headers["content-type"] == MEDIA["jsonl"]
    assert len(r.content.splitlines()) == 2
    assert_problem(unix.post(f"/api/v1/scans/{scan_id}/rematch", params={"format": "jsonl", "page": "2"}),
                   422, field_="page")


def test_a_store_failing_before_the_first_page_is_a_503_after_it_a_cut_stream(
        api: Api, unix: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    scan_id = finished_scan(api, unix)
    call = api.store.call
    failing = {"from_page": 1}
    read: list[int] = []

    def page_call(doing: str, query: Callable[..., Any], *args: Any) -> Any:
        if query is results.page_after:
            read.append(1)
            if len(read) >= failing["from_page"]:
                raise StoreError("cannot read the result", "database is locked by another process")
        return call(doing, query, *args)

    monkeypatch.setattr(api.store, "call", page_call)
    url = f"/api/v1/scans/{scan_id}/result"
    problem = assert_problem(unix.get(url, params={"format": "csv"}), 503)
    assert "database is locked" in problem["detail"]
    read.clear()
    failing["from_page"] = 2  # the answer has begun: all the daemon can do is end it short
    with pytest.raises(httpx.RemoteProtocolError):
        unix.get(url, params={"format": "csv"})


def test_a_scan_of_a_removed_profile_or_odd_options_still_exports(api: Api, unix: httpx.Client) -> None:
    """The document's head is written before the answer begins, and is total: a stored scan
    whose profile is gone, or whose options no profile takes, has no scaninfo but its hosts."""
    for odd in ({"profile": "retired"}, {"profile": "custom", "options": {"ports": ["not-a-port"]}}):
        scan_id = finished_scan(api, unix, devices=2)
        api.store.call("t", _set_scan, scan_id, odd)
        body = exported(unix, scan_id, "nmap-xml").content
        done = subprocess.run(["xmllint", "--noout", "--dtdvalid", DTD, "-"], input=body, capture_output=True)
        assert done.returncode == 0, done.stderr.decode()[:2000]
        assert b"<scaninfo" not in body and len(NmapParser.parse_fromstring(body.decode()).hosts) == 2


def _set_scan(db: Any, scan_id: str, fields: dict[str, Any]) -> None:
    with db.conn:
        for key, value in fields.items():
            db.execute(f"UPDATE scans SET {key} = ? WHERE id = ?", [orjson.dumps(value).decode()
                                                                     if isinstance(value, dict) else value, scan_id])
