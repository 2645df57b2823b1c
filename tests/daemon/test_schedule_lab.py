"""A one-minute schedule run for real: the daemon in the lab's scanner namespace starts the
schedule's scan at the next minute boundary, the scan completes against a lab host with what the
lab's truth says is open, and the schedule's run (schedule_runs) names it."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta

import pytest

from netscand.lab import Lab
from netscand.lab.harness import Daemon, in_lab, open_ports
from tests.daemon.test_e2e import wait_for

pytestmark = pytest.mark.lab
MINUTE_S = 60


def test_a_one_minute_schedule_starts_its_scan_at_the_next_minute(lab: Lab, daemon: Daemon) -> None:
    host = next(h for h in lab.truth["hosts"] if h["open"])
    (ip,) = in_lab([host["ip"]])
    with daemon.unix() as c:
        r = c.post("/api/v1/schedules", json={"name": "every minute", "cron": "* * * * *", "target": ip,
                                              "profile": "custom", "ports": [*host["open"], 7]})
        assert r.status_code == 201, r.text
        schedule = r.json()
        due = datetime.fromisoformat(schedule["next_due"])
        assert due.second == 0 and 0 < (due - datetime.now(UTC)).total_seconds() <= MINUTE_S
        run = _first_run(c, schedule["id"], timeout=MINUTE_S + 15)
        # One run is enough: no second scan starts while this one is checked.
        assert c.patch(f"/api/v1/schedules/{schedule['id']}", json={"enabled": False}).status_code == 200
        assert (run["due_at"], run["outcome"], run["missed"]) == (schedule["next_due"], "started", 0)
        assert datetime.fromisoformat(run["at"]) - due < timedelta(seconds=5)  # at the boundary, not a tick late
        scan = wait_for(c, run["scan_id"], timeout=60)
        assert scan["status"] == "completed" and scan["target"] == ip
        assert datetime.fromisoformat(scan["created_at"]) >= due
        result = c.get(f"/api/v1/scans/{run['scan_id']}/result").json()
    assert open_ports(result) == {(ip, p) for p in host["open"]}
    with sqlite3.connect(f"file:{daemon.state_dir / 'netscand.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT due_at, outcome, scan_id FROM schedule_runs WHERE schedule_id = ?",
                          [schedule["id"]]).fetchall()
    assert rows == [(schedule["next_due"], "started", run["scan_id"])]


def _first_run(client, schedule_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = client.get(f"/api/v1/schedules/{schedule_id}").json()["runs"]
        if runs:
            return runs[-1]
        time.sleep(0.5)
    raise AssertionError(f"schedule {schedule_id} started nothing within {timeout} s")
