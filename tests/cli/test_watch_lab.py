"""`netscanctl watch` follows a real daemon's scan in the lab by its event stream (SSE) to its
final status, and says so when the scan is not there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from netscand.lab import Lab
from netscand.lab.harness import Daemon, all_hosts, running_daemon

pytestmark = pytest.mark.lab
NETSCANCTL = str(Path(sys.executable).with_name("netscanctl"))  # the installed entry point


def ctl(daemon: Daemon, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NETSCANCTL, "--socket", str(daemon.socket), *argv], capture_output=True, text=True,
                          timeout=120)


def test_watch_follows_the_scan_to_its_end(lab: Lab) -> None:
    with running_daemon(lab) as daemon:
        started = json.loads(ctl(daemon, "--json", "start", *all_hosts(lab), "--profile", "custom",
                                 "--ports", "1-5000").stdout)
        watched = ctl(daemon, "--json", "watch", started["id"])
        assert watched.returncode == 0, watched.stderr
        final = json.loads(watched.stdout)
        assert (final["id"], final["status"], final["progress_percent"]) == (started["id"], "completed", 100)
        with daemon.unix() as c:
            assert final == c.get(f"/api/v1/scans/{started['id']}").json()
        # The stream of a finished scan replays its events and ends: watch answers at once.
        again = ctl(daemon, "watch", started["id"])
        assert again.returncode == 0 and "completed" in again.stdout
        logged = [json.loads(line) for line in daemon.log.read_text().splitlines() if line.startswith("{")]
        requests = [e["path"] for e in logged if e.get("event") == "api.request" and e["method"] == "GET"]
        # By its events, not by polling: each watch read the status once, at the end (and the test once).
        assert requests.count(f"/api/v1/scans/{started['id']}/events") == 2
        assert requests.count(f"/api/v1/scans/{started['id']}") == 3
        missing = ctl(daemon, "watch", "00000000-0000-0000-0000-000000000000")
        assert missing.returncode == 1 and missing.stderr.startswith("netscanctl: 404")
