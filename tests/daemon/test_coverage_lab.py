"""The daemon's coverage (docs/api.md, Coverage): the result of a running scan carries the scan's
counts and loss; the scan keeps them once it has ended, and every device its own, from the store."""

from __future__ import annotations

import time

import pytest

from netscand.lab import Lab
from netscand.lab.harness import Daemon, all_hosts
from tests.daemon.test_e2e import wait_for

pytestmark = pytest.mark.lab


def test_a_running_scan_shows_its_coverage_and_its_devices_keep_theirs(lab: Lab, daemon: Daemon) -> None:
    with daemon.unix() as c:
        scan = c.post("/api/v1/scans/start", json={"target": all_hosts(lab), "profile": "custom",
                                                   "ports": ["1-65535"]}).json()
        seen = None
        deadline = time.monotonic() + 120
        while seen is None and time.monotonic() < deadline:
            result = c.get(f"/api/v1/scans/{scan['id']}/result").json()
            if result["status"] == "running" and result.get("coverage", {}).get("probes_sent"):
                seen = result["coverage"]
            elif result["status"] != "running" and result["status"] != "queued":
                break
            time.sleep(0.1)
        done = wait_for(c, scan["id"], timeout=300)
        result = c.get(f"/api/v1/scans/{scan['id']}/result").json()
    assert seen is not None, "no running result with coverage was seen"
    assert seen["probes_answered"] <= seen["probes_sent"] and seen["retries"] >= 1
    assert done["status"] == "completed"
    kept = result["coverage"]  # from the store now: the run is gone
    assert kept["probes_sent"] >= seen["probes_sent"] and kept["probes_answered"] >= seen["probes_answered"]
    assert kept["estimated_loss"] is not None and kept["estimated_loss"] < 0.05  # a clean lab
    assert {d["ip"] for d in result["devices"]} == {h["ip"] for h in lab.truth["hosts"]}
    for device in result["devices"]:
        assert device["coverage"]["probes"] >= 65535, device["ip"]
        assert device["coverage"]["confidence"] > 0.999, device["ip"]
