"""A scan's CVE fields: stored with its devices, and replaced whole by a re-match."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from netscand.store import Store

ScanMaker = Callable[..., dict[str, Any]]
SSH_CPE = "cpe:2.3:a:openbsd:openssh:9.2:p1:*:*:*:*:*:*"
FINDING = {"id": "CVE-2024-6387", "status": "vulnerable", "cvss": 8.1, "severity": "high",
           "summary": "regreSSHion", "published": "2024-07-01T13:15:00.000", "evidence": "x < 9.8p1"}
COUNTS = {"critical": 0, "high": 1, "medium": 0, "low": 0, "none": 0}


def _ssh(**cve: Any) -> dict[str, Any]:
    return {"port": 22, "protocol": "tcp", "state": "open", "service": "SSH", "cpe": SSH_CPE, **cve}


def _device(port: dict[str, Any], counts: dict[str, int] | None) -> dict[str, Any]:
    extra = {"cve_counts": counts} if counts else None
    return {"ip": "198.18.0.230", "mac": None, "hostname": None, "vendor": None, "os_guess": "Linux",
            "extra": extra, "ports": [port]}


def test_cve_fields_round_trip(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan()["id"]
    store.put_devices(scan_id, [_device(_ssh(cves=[FINDING]), COUNTS)])
    store.update_scan(scan_id, cve={"cve_counts": COUNTS, "cve_data": {"loaded": True}})
    [device] = store.result(scan_id)
    assert device["cve_counts"] == COUNTS and device["ports"][0]["cves"] == [FINDING]
    assert store.get_scan(scan_id)["cve"] == {"cve_counts": COUNTS, "cve_data": {"loaded": True}}


def test_a_rematch_replaces_findings_notes_and_counts(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan()["id"]
    store.put_devices(scan_id, [_device(_ssh(cves=[FINDING]), COUNTS)])
    note = "version unknown: no CVE can be matched"
    store.put_cves(scan_id, [_device(_ssh(cves=[], cve_note=note), None) | {"cve_counts": None}],
                   {"cve_data": {"loaded": False}})
    [device] = store.result(scan_id)
    assert "cve_counts" not in device
    assert device["ports"][0]["cves"] == [] and device["ports"][0]["cve_note"] == note
    store.put_cves(scan_id, [_device(_ssh(cves=[FINDING]), None) | {"cve_counts": COUNTS}], {"x": 1})
    [device] = store.result(scan_id)
    assert device["cve_counts"] == COUNTS and "cve_note" not in device["ports"][0]
    assert store.get_scan(scan_id)["cve"] == {"x": 1}


def test_a_rematch_of_a_deleted_scan_is_a_key_error(store: Store) -> None:
    with pytest.raises(KeyError):
        store.put_cves("gone", [], {})


def test_a_rematch_reads_only_the_devices_and_ports_cve_matching_concerns(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan()["id"]
    http = {"port": 80, "protocol": "tcp", "state": "open", "service": "HTTP"}
    noted = {"port": 161, "protocol": "udp", "state": "open", "service": "SNMP", "cve_note": "version unknown"}
    store.put_devices(scan_id, [
        _device(_ssh(), None) | {"ports": [_ssh(), http]},
        _device(http, None) | {"ip": "198.18.0.10"},  # no CPE, no CVE fields: nothing to rematch
        _device(noted, None) | {"ip": "198.18.0.2"},
    ])
    concerned = store.cve_devices(scan_id)
    assert [(d["ip"], [p["port"] for p in d["ports"]]) for d in concerned] == [
        ("198.18.0.2", [161]), ("198.18.0.230", [22])]
    assert concerned[1]["os_guess"] == "Linux" and concerned[1]["ports"][0]["cpe"] == SSH_CPE
