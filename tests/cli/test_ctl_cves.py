"""netscanctl's result: CVEs per device grouped by severity, most severe first, and what CVE
data they come from (or that there is none)."""

from __future__ import annotations

from rich.console import Console

from netscand.cli.ctl import _print_result


def _finding(cve: str, severity: str | None, cvss: float | None, status: str = "vulnerable",
             **more: str) -> dict:
    return {"id": cve, "status": status, "cvss": cvss, "severity": severity, "summary": "s",
            "published": "2024-07-01T13:15:06.467", "evidence": "cpe", **more}


def _rows(res: dict) -> list[str]:
    console = Console(record=True, width=200)
    _print_result(console, res)
    return [" ".join(line.split()) for line in console.export_text().splitlines() if line.strip()]


def _result(**scan: object) -> dict:
    port = {"port": 22, "protocol": "tcp", "state": "open", "service": "SSH", "cves": [
        _finding("CVE-2025-32728", "low", 3.8),
        _finding("CVE-2024-6387", "high", 8.1, "fixed_by_distribution", fixed_version="1:9.2p1-2+deb12u3"),
        _finding("CVE-2015-1419", None, None),
        _finding("CVE-2099-0004", "critical", 9.3)]}
    device = {"ip": "198.18.0.230", "ports": [port],
              "cve_counts": {"critical": 1, "high": 0, "medium": 0, "low": 1, "none": 0}}
    return {"status": "completed", "devices_found": 1, "open_ports_total": 1, "duration_seconds": 3,
            "devices": [device], **scan}


def test_cves_by_severity_with_the_data_they_come_from() -> None:
    data = {"loaded": True, "updated_at": "2026-12-07T03:00:00Z",
            "sources": [{"name": "nvd", "records": 32, "newest": None, "imported_at": None}]}
    rows = _rows(_result(cve_data=data, cve_counts={"critical": 1, "high": 0, "medium": 0, "low": 1, "none": 0}))
    assert "198.18.0.230: 1 critical, 1 low" in rows
    ids = [row.split()[1] for row in rows if "CVE-" in row]
    assert ids == ["CVE-2099-0004", "CVE-2024-6387", "CVE-2025-32728", "CVE-2015-1419"]
    assert "high CVE-2024-6387 8.1 22/tcp fixed_by_distribution in 1:9.2p1-2+deb12u3" in rows
    assert "CVE data: nvd (32 records); updated 2026-12-07T03:00:00Z" in rows


def test_without_data_the_note_is_shown_and_without_matching_nothing() -> None:
    note = "no CVE data is loaded: run `netscand cve sync` or `netscand cve import`"
    assert f"CVE: {note}" in _rows(_result(cve_data={"loaded": False, "note": note}))
    assert not any("CVE" in row for row in _rows(_result()))
