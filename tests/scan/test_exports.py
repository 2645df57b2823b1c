"""The export writers checked by their real consumers: xmllint against the DTD Debian's nmap
package installs, python-libnmap, nmap's ndiff, Python's csv reader; hostile text from the hosts
scanned (hypothesis) must never make a document invalid or a CSV cell a formula."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from libnmap.parser import NmapParser

from netscand import __version__
from netscand.lab.ndiff import Difference, ndiff
from netscand.scan.exports import (
    FORMULA_STARTS, INVENTORY_COLUMNS, INVENTORY_PORT_COLUMNS, SCAN_COLUMNS, csv_device, device_export, export,
)
from netscand.scan.nmap_xml import OS_CLASSES, clean, cpe_uri, port_list
from netscand.scan.ports import top_ports

DTD = "/usr/share/nmap/nmap.dtd"
SCAN_ID = "123e4567-e89b-12d3-a456-426614174000"
CVE = {"id": "CVE-2024-6387", "status": "vulnerable", "cvss": 8.1, "severity": "high", "summary": "regreSSHion",
       "published": "2024-07-01T13:15:10.123", "evidence": "cpe:2.3:a:openbsd:openssh:*:*:*:*:*:*:*:* < 9.8p1"}


def scan(**fields: Any) -> dict[str, Any]:
    return {"id": SCAN_ID, "status": "completed", "target": "198.18.0.0/24", "profile": "normal", "options": {},
            "created_at": "2026-12-07T08:59:00Z", "started_at": "2026-12-07T09:00:00Z",
            "finished_at": "2026-12-07T09:10:00Z", "error": None, **fields}


def profiled(**fields: Any) -> dict[str, Any]:
    """A device with everything a deep scan can say of it."""
    return {
        "ip": "198.18.0.5", "mac": "02:00:C6:12:00:05", "hostname": "printer.lab", "vendor": "Acme & Sons",
        "os_guess": "Linux", "os_confidence": 0.87,
        "hostnames": [{"name": "printer.lab", "source": "dns"}, {"name": "printer.local", "source": "mdns"}],
        "not_shown": {"closed": 995}, "not_shown_udp": {"closed": 90, "open|filtered": 10},
        "ports": [
            {"port": 22, "protocol": "tcp", "state": "open", "service": "SSH", "product": "OpenSSH",
             "version": "9.2p1", "banner": "SSH-2.0-OpenSSH_9.2p1 Debian-2",
             "cpe": "cpe:2.3:a:openbsd:openssh:9.2p1:*:*:*:*:*:*:*", "cves": [CVE]},
            {"port": 53, "protocol": "udp", "state": "open|filtered", "service": "DOMAIN"},
            {"port": 80, "protocol": "tcp", "state": "open", "service": "HTTP"},
            {"port": 113, "protocol": "tcp", "state": "closed", "service": "AUTH"},
            {"port": 161, "protocol": "udp", "state": "open", "service": "SNMP"},
        ],
        **fields,
    }


def bare(ip: str, *ports: int) -> dict[str, Any]:
    return {"ip": ip, "mac": None, "hostname": None, "vendor": None, "os_guess": None,
            "ports": [{"port": p, "protocol": "tcp", "state": "open", "service": None} for p in ports]}


def written(fmt: str, devices: list[dict[str, Any]], addresses: int | None = None, **fields: Any) -> bytes:
    writer = export(fmt, scan(**fields), addresses)
    # Two pages, as the API writes them, so that state carried between pages is exercised.
    return writer.head() + writer.page(devices[:1]) + writer.page(devices[1:]) + writer.tail()


def dtd_valid(document: bytes) -> None:
    done = subprocess.run(["xmllint", "--noout", "--dtdvalid", DTD, "-"], input=document, capture_output=True)
    assert done.returncode == 0, done.stderr.decode() + document.decode(errors="replace")


# -- nmap XML --------------------------------------------------------------------------------------

def test_an_export_is_valid_against_nmaps_dtd() -> None:
    dtd_valid(written("nmap-xml", [profiled(), bare("198.18.0.7"), bare("198.18.0.9", 25)]))


def test_runstats_count_the_addresses_probed_as_nmap_does() -> None:
    """nmap's total is every address it tried (its summary: "256 IP addresses (3 hosts up)
    scanned in 600.00 seconds"), its down those not up; a scan that kept how many it probed says
    so, one that did not (a running one) counts its hosts up alone."""
    devices = [profiled(), bare("198.18.0.7"), bare("198.18.0.9", 25)]
    document = written("nmap-xml", devices, addresses=256)
    dtd_valid(document)
    report = NmapParser.parse_fromstring(document.decode())
    assert (report.hosts_up, report.hosts_down, report.hosts_total) == (3, 253, 256)
    assert report.summary.endswith("; 256 IP addresses (3 hosts up) scanned in 600 seconds")
    unknown = NmapParser.parse_fromstring(written("nmap-xml", devices).decode())
    assert (unknown.hosts_up, unknown.hosts_down, unknown.hosts_total) == (3, 0, 3)
    # Hosts found beyond what was kept (a name that resolved elsewhere) are still counted up.
    beyond = NmapParser.parse_fromstring(written("nmap-xml", devices, addresses=2).decode())
    assert (beyond.hosts_up, beyond.hosts_down, beyond.hosts_total) == (3, 0, 3)


def test_libnmap_reads_every_field_back() -> None:
    device = profiled(timed_out=True)
    report = NmapParser.parse_fromstring(written("nmap-xml", [device, bare("198.18.0.9", 25)]).decode())
    assert report.commandline.startswith("netscand scan --profile normal") and report.version == __version__
    assert (report.started, report.endtime, report.elapsed) == (1796634000, 1796634600, 600.0)
    assert report.hosts_up == report.hosts_total == 2 and report.is_consistent()
    host = report.hosts[0]
    assert (host.address, host.ipv4) == ("198.18.0.5", "198.18.0.5")
    assert (host.mac, host.vendor) == (device["mac"], device["vendor"])
    assert host.status == "up" and host.hostnames == ["printer.lab"]  # the DNS name; mDNS's is a script
    assert host.scripts_results == [{"id": "netscand-names", "output": "mdns: printer.local", "elements": {}}]
    assert [(m.name, m.accuracy) for m in host.os.osmatches] == [("Linux", 87)]
    (osclass,) = host.os.osmatches[0].osclasses
    assert (osclass.vendor, osclass.osfamily, osclass.type, osclass.accuracy) == \
        ("Linux", "Linux", "general purpose", 87)
    assert host.extraports_state["state"]["count"] == "10"  # libnmap keeps the last extraports only
    services = {(s.port, s.protocol): s for s in host.services}
    assert sorted(services) == sorted((p["port"], p["protocol"]) for p in device["ports"])
    for p in device["ports"]:
        s = services[(p["port"], p["protocol"])]
        assert (s.state, s.service) == (p["state"], p["service"].lower())
    ssh = services[(22, "tcp")]
    assert ssh.service_dict["product"] == "OpenSSH" and ssh.service_dict["version"] == "9.2p1"
    assert ssh.service_dict["method"] == "probed" and ssh.servicefp == "SSH-2.0-OpenSSH_9.2p1 Debian-2"
    assert [c.cpestring for c in ssh.cpelist] == ["cpe:/a:openbsd:openssh:9.2p1"]
    assert ssh.cpelist[0].get_product() == "openssh" and ssh.cpelist[0].get_version() == "9.2p1"
    assert ssh.scripts_results == [{"id": "netscand-cves", "output": "CVE-2024-6387", "elements": {}}]
    assert services[(80, "tcp")].service_dict["method"] == "table"
    assert services[(113, "tcp")].reason == "reset"


@pytest.mark.parametrize(("ports", "not_shown", "reason"), [
    ([("tcp", "closed"), ("udp", "open")], {}, "reset"),
    ([], {"not_shown": {"closed": 1000}}, "reset"),  # closed ports counted, none listed
    ([("udp", "open"), ("udp", "closed")], {}, "udp-response"),
    ([("udp", "closed")], {"not_shown_udp": {"open|filtered": 9}}, "port-unreach"),
    ([("tcp", "filtered")], {}, "unknown-response"),
])
def test_a_hosts_reason_is_its_strongest_answer(ports: list[tuple[str, str]], not_shown: dict[str, Any],
                                                  reason: str) -> None:
    device = {**bare("198.18.0.7"), **not_shown,
              "ports": [{"port": 100 + n, "protocol": protocol, "state": state, "service": None}
                        for n, (protocol, state) in enumerate(ports)]}
    document = written("nmap-xml", [device])
    dtd_valid(document)
    assert ET.fromstring(document).find("host/status").get("reason") == reason


@pytest.mark.parametrize(("guess", "osclass"), [
    ("Linux (Debian)", ("Linux", "Linux", "general purpose")),
    ("Windows", ("Microsoft", "Windows", "general purpose")),
    ("Cisco IOS", ("Cisco", "IOS", "router")),
    ("Plan 9", None),  # no signature's: a match without a class
])
def test_an_os_guess_of_a_signature_has_its_osclass(guess: str, osclass: tuple[str, str, str] | None) -> None:
    document = written("nmap-xml", [profiled(os_guess=guess, os_confidence=0.66)])
    dtd_valid(document)
    match = ET.fromstring(document).find("host/os/osmatch")
    found = [(c.get("vendor"), c.get("osfamily"), c.get("type"), c.get("accuracy")) for c in match]
    assert (match.get("name"), found) == (guess, [(*osclass, "66")] if osclass else [])


def test_every_os_signature_has_an_osclass() -> None:
    table = tomllib.loads(files("netscand").joinpath("data/os-signatures.toml").read_text(encoding="utf-8"))
    assert {s["name"] for s in table["signature"]} == set(OS_CLASSES)


def test_not_shown_ports_are_extraports_merged_by_state() -> None:
    root = ET.fromstring(written("nmap-xml", [profiled()]))
    extra = {e.get("state"): (e.get("count"), [(r.get("proto"), r.get("count"), r.get("reason")) for r in e])
             for e in root.iterfind("host/ports/extraports")}
    assert extra == {"closed": ("1085", [("tcp", "995", "reset"), ("udp", "90", "port-unreach")]),
                     "open|filtered": ("10", [("udp", "10", "no-response")])}


def test_scaninfo_lists_the_scans_ports() -> None:
    root = ET.fromstring(written("nmap-xml", [], profile="custom", options={"ports": [22, "80-82", 443],
                                                                             "udp_ports": [53]}))
    infos = [(i.get("type"), i.get("protocol"), i.get("numservices"), i.get("services")) for i in root.iter("scaninfo")]
    assert infos == [("syn", "tcp", "5", "22,80-82,443"), ("udp", "udp", "1", "53")]
    assert root.find("scaninfo").get("services") and root.find("runstats/hosts").get("up") == "0"
    normal = ET.fromstring(written("nmap-xml", [])).find("scaninfo")
    assert normal.get("numservices") == "1000" and normal.get("services") == port_list(top_ports(1000))


def test_an_unfinished_scan_says_its_result_is_partial() -> None:
    dtd_valid(written("nmap-xml", [bare("198.18.0.9", 25)], status="running", finished_at=None))
    root = ET.fromstring(written("nmap-xml", [], status="failed", error="netscand restarted"))
    finished = root.find("runstats/finished")
    assert finished.get("exit") == "error" and finished.get("errormsg") == "netscand restarted"


def test_port_lists_are_ranges() -> None:
    assert port_list([]) == ""
    assert port_list([7, 1, 3, 4, 6, 5, 10]) == "1,3-7,10"
    assert port_list(range(1, 65536)) == "1-65535"


@pytest.mark.parametrize(("name", "uri"), [
    ("cpe:2.3:a:openbsd:openssh:9.2p1:*:*:*:*:*:*:*", "cpe:/a:openbsd:openssh:9.2p1"),
    ("cpe:2.3:a:openbsd:openssh:*:*:*:*:*:*:*:*", "cpe:/a:openbsd:openssh"),
    ("cpe:2.3:a:f5:nginx:1.22.1:rc1:*:*:*:*:*:*", "cpe:/a:f5:nginx:1.22.1:rc1"),
    ("cpe:2.3:a:x:y:1.0\\:beta\\!:*:*:*:*:*:*:*", "cpe:/a:x:y:1.0%3abeta%21"),
    ("cpe:2.3:o:linux:linux_kernel:-:*:*:*:*:*:*:*", "cpe:/o:linux:linux_kernel:-"),
    ("not a cpe", None),
])
def test_cpe_names_become_the_uris_nmap_writes(name: str, uri: str | None) -> None:
    assert cpe_uri(name) == uri


# Text the hosts scanned control: any code point, control characters and lone surrogates too.
hostile = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
# What the store can hold of it: SQLite's text is UTF-8, which has no surrogates.
stored = st.text(st.characters(codec="utf-8", exclude_categories=()), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=hostile, banner=hostile, product=hostile, version=hostile, vendor=hostile, os=hostile, cpe=hostile)
def test_hostile_text_keeps_the_document_valid(name: str, banner: str, product: str, version: str,
                                               vendor: str, os: str, cpe: str) -> None:
    port = {"port": 8080, "protocol": "tcp", "state": "open", "service": name or "X", "product": product,
            "version": version, "banner": banner, "cpe": cpe}
    device = profiled(hostname=name, hostnames=[{"name": name, "source": "dns"}, {"name": banner, "source": "netbios"}],
                      vendor=vendor, os_guess=os or None, ports=[port])
    document = written("nmap-xml", [device])
    dtd_valid(document)
    root = ET.fromstring(document)
    assert root.find("host/hostnames/hostname").get("name") == clean(name)
    assert root.find("host/hostscript/script").get("output") == f"netbios: {clean(banner)}"
    service = root.find("host/ports/port/service")
    assert (service.get("product"), service.get("version"), service.get("servicefp")) == \
        tuple(clean(v) if v else None for v in (product, version, banner))


@given(hostile)
def test_clean_leaves_only_what_xml_allows(text: str) -> None:
    cleaned = clean(text)
    assert len(cleaned) == len(text)
    ET.fromstring(f"<a b='{cleaned.replace('&', '').replace('<', '').replace(chr(39), '')}'/>".encode())


# -- ndiff -----------------------------------------------------------------------------------------

def test_ndiff_reports_what_changed_between_two_exports(tmp_path: Path) -> None:
    before = [profiled(), bare("198.18.0.7", 25), bare("198.18.0.8", 443)]
    after = [profiled(), bare("198.18.0.8", 443, 8443), bare("198.18.0.9", 80)]
    ssh = after[0]["ports"][0] = {**after[0]["ports"][0], "version": "9.8p1", "cpe": "cpe:2.3:a:openbsd:openssh:9.8p1",
                                  "banner": "SSH-2.0-OpenSSH_9.8p1", "cves": []}
    after[0] = {**after[0], "os_guess": "FreeBSD"}
    (tmp_path / "a.xml").write_bytes(written("nmap-xml", before))
    (tmp_path / "b.xml").write_bytes(written("nmap-xml", after, started_at="2026-12-08T09:00:00Z",
                                             finished_at="2026-12-08T09:10:00Z"))
    found = set(ndiff(tmp_path / "a.xml", tmp_path / "b.xml"))
    assert found == {
        Difference("service", "198.18.0.5", 22, "tcp", ("ssh", "OpenSSH", "9.2p1"), ("ssh", "OpenSSH", ssh["version"])),
        Difference("script", "198.18.0.5", 22, "tcp", "CVE-2024-6387", None, script="netscand-cves"),
        Difference("os", "198.18.0.5", before=("Linux",), after=("FreeBSD",)),
        Difference("host_gone", "198.18.0.7"),
        Difference("state", "198.18.0.8", 8443, "tcp", None, "open"),
        Difference("host_appeared", "198.18.0.9"),
    }


def test_a_name_the_host_gives_itself_coming_and_going_is_no_other_host(tmp_path: Path) -> None:
    # ndiff pairs hosts by their first address and first hostname: an mDNS or NetBIOS answer
    # missed in one scan must not read as a host gone and another appeared.
    named = bare("198.18.0.7", 22) | {"hostnames": [{"name": "laptop.local", "source": "mdns"},
                                                    {"name": "LAPTOP", "source": "netbios"}]}
    (tmp_path / "a.xml").write_bytes(written("nmap-xml", [named]))
    (tmp_path / "b.xml").write_bytes(written("nmap-xml", [bare("198.18.0.7", 22)], started_at="2026-12-08T09:00:00Z"))
    assert not {d.kind for d in ndiff(tmp_path / "a.xml", tmp_path / "b.xml")} & {"host_gone", "host_appeared"}


def test_ndiff_finds_nothing_between_two_exports_of_one_network(tmp_path: Path) -> None:
    devices = [profiled(), bare("198.18.0.8", 443)]
    (tmp_path / "a.xml").write_bytes(written("nmap-xml", devices))
    # A banner's volatile text (an HTTP Date) is no change: banners are not script results.
    devices[0]["ports"][0] = {**devices[0]["ports"][0], "banner": "something else"}
    (tmp_path / "b.xml").write_bytes(written("nmap-xml", devices, started_at="2026-12-08T09:00:00Z"))
    assert ndiff(tmp_path / "a.xml", tmp_path / "b.xml") == []


# -- CSV and JSON Lines ----------------------------------------------------------------------------

def test_csv_is_one_row_per_port_with_a_header() -> None:
    rows = list(csv.DictReader(io.StringIO(written("csv", [profiled(), bare("198.18.0.7")]).decode())))
    assert list(rows[0]) == ["scan_id", "ip", "mac", "hostname", "vendor", "os", "port", "protocol", "state",
                             "service", "product", "version", "cpe", "cves"]
    assert [(r["ip"], r["port"], r["protocol"]) for r in rows] == [
        ("198.18.0.5", "22", "tcp"), ("198.18.0.5", "53", "udp"), ("198.18.0.5", "80", "tcp"),
        ("198.18.0.5", "113", "tcp"), ("198.18.0.5", "161", "udp"), ("198.18.0.7", "", "")]
    assert rows[0] == {"scan_id": SCAN_ID, "ip": "198.18.0.5", "mac": "02:00:C6:12:00:05", "hostname": "printer.lab",
                       "vendor": "Acme & Sons", "os": "Linux", "port": "22", "protocol": "tcp", "state": "open",
                       "service": "SSH", "product": "OpenSSH", "version": "9.2p1",
                       "cpe": "cpe:2.3:a:openbsd:openssh:9.2p1:*:*:*:*:*:*:*", "cves": "CVE-2024-6387"}


def test_csv_joins_cve_ids_with_semicolons() -> None:
    device = bare("198.18.0.7", 22)
    device["ports"][0]["cves"] = [CVE, {**CVE, "id": "CVE-2023-48795"}]
    (row,) = csv.DictReader(io.StringIO((export("csv", scan()).head() + csv_device({"scan_id": SCAN_ID, **device},
                                                                                     SCAN_COLUMNS)).decode()))
    assert row["cves"] == "CVE-2024-6387;CVE-2023-48795"


@given(stored, st.sampled_from(("", *FORMULA_STARTS)))
def test_no_csv_cell_starts_a_formula(text: str, start: str) -> None:
    value = start + text
    device = {**bare("198.18.0.7", 22), "hostname": value}
    device["ports"][0]["product"] = value
    (row,) = csv.DictReader(io.StringIO(written("csv", [device]).decode(), newline=""))
    for cell in (row["hostname"], row["product"]):
        assert not cell.startswith(FORMULA_STARTS)
        assert cell == clean("'" + value if value.startswith(FORMULA_STARTS) else value)


# What a terminal acts on: C0 controls but tab, LF and CR; DEL; C1 controls (CSI is U+009B).
TERMINAL_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@given(hostile, hostile)
def test_a_csv_cell_holds_no_terminal_control(name: str, banner: str) -> None:
    device = {**bare("198.18.0.7", 22), "hostname": name}
    device["ports"][0]["product"] = banner
    document = written("csv", [device]).decode()  # lone surrogates too became U+FFFD: UTF-8 holds it
    assert not TERMINAL_CONTROLS.search(document)
    (row,) = csv.DictReader(io.StringIO(document, newline=""))
    for cell, value in ((row["hostname"], name), (row["product"], banner)):
        assert cell in (clean(value), "'" + clean(value))


def test_jsonl_is_each_device_as_the_result_has_it() -> None:
    devices = [profiled(), bare("198.18.0.7")]
    lines = written("jsonl", devices).splitlines()
    assert [orjson.loads(line) for line in lines] == [{"scan_id": SCAN_ID, **d} for d in devices]
    assert list(orjson.loads(lines[0]))[0] == "scan_id"


def test_the_inventorys_devices_export_with_their_own_columns() -> None:
    device = {"id": "d1", "site_id": None, "identity": "mac:02:00:C6:12:00:05", "ip": "198.18.0.5",
              "mac": "02:00:C6:12:00:05", "mac_randomized": True, "hostname": "h1", "vendor": None, "os": "Linux",
              "present": False, "max_severity": "high", "first_seen": "2026-12-07T09:00:00Z",
              "last_seen": "2026-12-07T10:00:00Z", "last_scan_id": SCAN_ID,
              "ports": [{"port": 22, "protocol": "tcp", "service": "ssh", "product": "OpenSSH", "version": "9.2p1"}]}
    writer = device_export("csv", INVENTORY_COLUMNS, port_columns=INVENTORY_PORT_COLUMNS)
    (row,) = csv.DictReader(io.StringIO((writer.head() + writer.page([device])).decode()))
    assert row == {"device_id": "d1", "site_id": "", "ip": "198.18.0.5", "mac": "02:00:C6:12:00:05", "hostname": "h1",
                   "vendor": "", "os": "Linux", "present": "false", "max_severity": "high",
                   "first_seen": "2026-12-07T09:00:00Z", "last_seen": "2026-12-07T10:00:00Z", "last_scan_id": SCAN_ID,
                   "port": "22", "protocol": "tcp", "service": "ssh", "product": "OpenSSH", "version": "9.2p1"}


def test_devices_without_a_scan_export_with_their_own_columns() -> None:
    # As the inventory's export writes its devices.
    columns = (("device_id", "id"), ("site_id", "site_id"), ("ip", "ip"))
    device = {"id": "d1", "site_id": None, **bare("198.18.0.7", 22, 80)}
    writer = device_export("csv", columns)
    rows = list(csv.reader(io.StringIO((writer.head() + writer.page([device]) + writer.tail()).decode())))
    assert rows[0][:4] == ["device_id", "site_id", "ip", "port"] and rows[1][:4] == ["d1", "", "198.18.0.7", "22"]
    assert len(rows) == 3
    jsonl = device_export("jsonl", columns)
    assert orjson.loads(jsonl.page([device])) == device
