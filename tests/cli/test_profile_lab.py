"""Device profiling against the lab's real daemons: the `normal` profile, graded field by field
against the ground truth (netscand.lab.grade, the same rules bench/profiling.py applies to nmap)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from netscand.lab import Lab
from netscand.lab.grade import OK, grade, identity_grades
from netscand.scan.ports import top_ports
from netscand.scan.profiles import PROFILES

pytestmark = pytest.mark.lab


def profile_scan(lab: Lab, *args: str) -> dict:
    targets = ",".join([*(h["ip"] for h in lab.truth["hosts"]), *lab.truth["router"]["ips"]])
    argv = lab.scanner_argv([sys.executable, "-m", "netscand", "scan", targets, "--json", *args])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def failures(grades: list) -> list[str]:
    return [f"{g.host} {g.field} {g.where}: expected {g.expected!r}, got {g.got!r}" for g in grades if g.verdict != OK]


def test_normal_scan_matches_ground_truth_field_by_field(lab: Lab) -> None:
    doc = profile_scan(lab, "--profile", "normal")
    assert doc["status"] == "completed"
    assert doc["duration_seconds"] < float(PROFILES["normal"].host_budget_s)
    assert not any(d.get("timed_out") for d in doc["devices"])
    scanned = set(top_ports(1000))
    grades = grade(lab.truth, doc["devices"], scanned) + identity_grades(lab.truth, doc["devices"])
    assert failures(grades) == []
    # Every server port the profile scans was graded, and every server was.
    graded = {(g.host, g.where) for g in grades if g.field == "service"}
    servers = [h for h in lab.truth["hosts"] if h["kind"] == "server"]
    assert graded >= {(h["name"], f"tcp/{p}") for h in servers for p in h["services"] if int(p) in scanned}
    assert {g.host for g in grades if g.field == "os"} >= {h["name"] for h in servers}


def test_every_daemon_is_identified_on_all_its_ports(lab: Lab) -> None:
    """Ports outside the top 1000 (Redis's 6379) too, through a custom scan with profiling."""
    ports = sorted({int(p) for h in lab.truth["hosts"] for p in h.get("services", {})} | {53})
    doc = profile_scan(lab, "--profile", "custom", "--ports", ",".join(map(str, ports)), "--profiling")
    grades = grade(lab.truth, doc["devices"])
    assert failures(grades) == []
    assert {g.where for g in grades if g.field == "product"} >= {"tcp/6379", "udp/161", "tcp/3306", "tcp/53"}
