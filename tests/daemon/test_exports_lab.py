"""A real daemon's scan of the lab, exported in every format over its Unix socket as a stream,
read back by the exports' consumers: xmllint against nmap's DTD, python-libnmap (every host,
port, service and OS field the JSON result has), nmap's ndiff (the export against the same
scan without a host), csv and JSON; netscanctl writes the same bytes."""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from libnmap.parser import NmapParser

from netscand.lab import Lab
from netscand.lab.harness import Daemon, all_hosts
from netscand.lab.ndiff import Difference, ndiff
from netscand.scan.exports import export
from netscand.scan.nmap_xml import cpe_uri
from tests.daemon.test_e2e import NETSCANCTL, wait_for

pytestmark = pytest.mark.lab

DTD = "/usr/share/nmap/nmap.dtd"
GIVEN = ("dns", "user")  # the sources of the names in <hostnames>


def streamed(daemon: Daemon, scan_id: str, fmt: str) -> bytes:
    """The export as it arrives over the socket, chunk by chunk."""
    with daemon.unix() as c, c.stream("GET", f"/api/v1/scans/{scan_id}/result", params={"format": fmt}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["transfer-encoding"] == "chunked"
        chunks = list(r.iter_raw())
    assert len(chunks) > 1 or fmt == "jsonl"
    return b"".join(chunks)


def test_a_real_scan_exports_in_every_format(lab: Lab, daemon: Daemon, tmp_path: Path) -> None:
    with daemon.unix() as c:
        scan = c.post("/api/v1/scans/start", json={"target": all_hosts(lab), "profile": "normal"}).json()
        scan = wait_for(c, scan["id"], timeout=300)
        assert scan["status"] == "completed"
        devices: list[dict[str, Any]] = c.get(f"/api/v1/scans/{scan['id']}/result").json()["devices"]
    assert devices and any(p.get("product") for d in devices for p in d["ports"])
    exports = {fmt: streamed(daemon, scan["id"], fmt) for fmt in ("nmap-xml", "csv", "jsonl")}

    xml = tmp_path / "scan.xml"
    xml.write_bytes(exports["nmap-xml"])
    valid = subprocess.run(["xmllint", "--noout", "--dtdvalid", DTD, str(xml)], capture_output=True, text=True)
    assert valid.returncode == 0, valid.stderr
    _libnmap_reads_back(exports["nmap-xml"].decode(), devices)
    # ndiff against the same scan written without its first host: the one difference it reports
    # is that host gone (two real scans of an unchanged lab would differ by what its hosts answer
    # by chance; tests/daemon's changes lab test diffs two scans around a lab change).
    fewer = tmp_path / "fewer.xml"
    fewer.write_bytes(_written(scan, all_hosts(lab), devices[1:]))
    assert ndiff(xml, fewer) == [Difference("host_gone", devices[0]["ip"])]

    rows = list(csv.DictReader(io.StringIO(exports["csv"].decode(), newline="")))
    assert [(r["ip"], r["port"], r["protocol"], r["state"], r["product"]) for r in rows] == [
        (d["ip"], str(p["port"]), p["protocol"], p["state"], p.get("product", "")) for d in devices for p in d["ports"]]
    lines = [orjson.loads(line) for line in exports["jsonl"].splitlines()]
    assert lines == [{"scan_id": scan["id"], **d} for d in devices]

    for fmt, data in exports.items():
        out = tmp_path / f"ctl.{fmt}"
        done = subprocess.run([NETSCANCTL, "--socket", str(daemon.socket), "export", scan["id"], "--format", fmt,
                               "-o", str(out)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert out.read_bytes() == data


def _written(scan: dict[str, Any], target: str | list[str], devices: list[dict[str, Any]]) -> bytes:
    """The scan's nmap XML as the daemon writes it, of `devices` (as its JSON result has them)."""
    writer = export("nmap-xml", {**scan, "target": target, "profile": "normal", "options": {}, "error": None})
    return writer.head() + writer.page(devices) + writer.tail()


def _libnmap_reads_back(document: str, devices: list[dict[str, Any]]) -> None:
    report = NmapParser.parse_fromstring(document)
    assert [h.address for h in report.hosts] == [d["ip"] for d in devices]
    assert report.hosts_up == len(devices) and report.commandline.startswith("netscand scan --profile normal")
    for host, d in zip(report.hosts, devices, strict=True):
        assert host.is_up() and (host.mac or None, host.vendor or None) == (d["mac"], d["vendor"])
        # Only the names a host is given (DNS, the user's); those it gives itself are a host script.
        names = d.get("hostnames", [])
        given = [n["name"] for n in names if n["source"] in GIVEN] if names else [d["hostname"]] * bool(d["hostname"])
        assert host.hostnames == list(dict.fromkeys(given))
        told = sorted(f"{n['source']}: {n['name']}" for n in names if n["source"] not in GIVEN)
        script = [{"id": "netscand-names", "output": "\n".join(told), "elements": {}}] if told else []
        assert (host.scripts_results or []) == script  # libnmap: {} for a host without scripts
        os = [(m.name, m.accuracy) for m in host.os.osmatches]
        assert os == ([(d["os_guess"], round(100 * d["os_confidence"]))] if d["os_guess"] else [])
        services = {(s.port, s.protocol): s for s in host.services}
        assert sorted(services) == sorted((p["port"], p["protocol"]) for p in d["ports"])
        for p in d["ports"]:
            s = services[(p["port"], p["protocol"])]
            assert (s.state, s.service) == (p["state"], (p["service"] or "").lower())
            assert [s.service_dict.get(k) for k in ("product", "version")] == [p.get("product"), p.get("version")]
            assert s.servicefp == (p.get("banner") or "")
            assert [c.cpestring for c in s.cpelist] == ([cpe_uri(p["cpe"])] if p.get("cpe") else [])
