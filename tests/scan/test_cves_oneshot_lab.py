"""`netscand scan --cve-match` in the lab: the one-shot scan matches the services it found
against the CVE data in its configured state directory (tests/vuln/fixtures imported), and says
so when there is none, leaving no database behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from netscand.lab import Lab
from netscand.lab.harness import in_lab
from netscand.vuln.store import CveStore

pytestmark = pytest.mark.lab
FIXTURES = Path(__file__).parents[1] / "vuln" / "fixtures"
# The lab's OpenSSH (1:9.2p1-2+deb12u10) on the fixture records, written from them (see
# tests/daemon/test_cve_lab.py): every 9.2p1 CVE fixed in an earlier bookworm build.
FBD, DEB = "fixed_by_distribution", "1:9.2p1-2+deb12u"
OPENSSH = {"CVE-2023-28531": (FBD, DEB + "2"), "CVE-2023-38408": (FBD, DEB + "1"),
           "CVE-2023-48795": (FBD, DEB + "2"), "CVE-2023-51384": (FBD, DEB + "2"),
           "CVE-2023-51385": (FBD, DEB + "2"), "CVE-2024-6387": (FBD, DEB + "3"),
           "CVE-2025-26465": (FBD, DEB + "5"), "CVE-2025-32728": (FBD, DEB + "6"),
           "CVE-2099-0001": ("vulnerable", None), "CVE-2099-0002": ("needs_platform", None)}


def _scan(lab: Lab, state: Path, *extra: str) -> dict[str, Any]:
    config = state.parent / "netscand.toml"
    config.write_text(f'[daemon]\nstate_dir = "{state}"\n')
    [s1] = [h for h in lab.truth["hosts"] if h.get("name") == "s1"]  # OpenSSH and nginx
    argv = [sys.executable, "-m", "netscand", "scan", *in_lab([s1["ip"]]), "--ports", "22,80", "--profiling",
            "--cve-match", "--json", "--config", str(config), *extra]
    proc = subprocess.run(lab.scanner_argv(argv), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_one_shot_scan_matches_cves(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    store = CveStore(state / "cve.db")
    store.import_nvd([FIXTURES / "nvd-lab.json"])
    store.import_tracker(FIXTURES / "debian-tracker.json")
    doc = _scan(lab, state)
    assert doc["cve_data"]["loaded"]
    [device] = doc["devices"]
    ssh = next(p for p in device["ports"] if p["port"] == 22)
    assert {f["id"]: (f["status"], f.get("fixed_version")) for f in ssh["cves"]} == OPENSSH
    assert device["cve_counts"] == doc["cve_counts"] and sum(doc["cve_counts"].values()) > 0


def test_without_a_cve_database_the_one_shot_says_so(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    doc = _scan(lab, state)
    assert doc["status"] == "completed" and not doc["cve_data"]["loaded"]
    assert "netscand cve sync" in doc["cve_data"]["note"] and not (state / "cve.db").exists()
