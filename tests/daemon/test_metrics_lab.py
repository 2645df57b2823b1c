"""/metrics and /readyz of a real daemon in the lab: the engine's own counters after a real
scan, and a worker the supervisor replaced."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from netscand.lab import Lab
from netscand.lab.harness import Daemon, all_hosts, wait_workers_ready
from tests.api.conftest import scrape
from tests.daemon.test_e2e import wait_for

pytestmark = pytest.mark.lab
WORKERS = ("0", "1")  # start_daemon runs two


def total(samples: dict, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def per_worker(samples: dict, name: str) -> dict[str, float]:
    return {dict(labels)["worker"]: v for (n, labels), v in samples.items() if n == name}


def wait_until_ready(client: httpx.Client, timeout: float = 20) -> None:
    assert wait_workers_ready(client, timeout)["checks"] == {"store": "ok", "engine": "ok"}


def test_a_scan_shows_in_the_metrics(lab: Lab, daemon: Daemon) -> None:
    with daemon.unix() as c:
        wait_until_ready(c)
        before = scrape(c)
        scan = c.post("/api/v1/scans/start", json={"target": all_hosts(lab), "profile": "quick"}).json()
        done = wait_for(c, scan["id"])
        assert done["status"] == "completed" and done["ports_found"] > 0
        after = scrape(c)
    assert total(before, "netscand_probes_sent_total") == 0
    assert total(after, "netscand_probes_sent_total") > 0
    assert total(after, "netscand_replies_received_total") > 0
    assert set(per_worker(after, "netscand_probes_sent_total")) == set(WORKERS)
    assert after[("netscand_scans", (("status", "completed"),))] == 1
    assert total(after, "netscand_scans") == 1
    assert after[("netscand_api_requests_total", (("code", "202"), ("listener", "unix")))] == 1
    assert per_worker(after, "netscand_worker_up") == {w: 1 for w in WORKERS}
    assert per_worker(after, "netscand_worker_restarts_total") == {w: 0 for w in WORKERS}
    assert after[("process_resident_memory_bytes", ())] > 0

    token = daemon.token("prometheus", "read")
    with daemon.https(None) as anonymous, daemon.https(token) as prometheus:
        assert anonymous.get("/metrics").status_code == 401
        assert anonymous.get("/readyz").status_code == 200
        over_tls = scrape(prometheus)
    assert over_tls[("netscand_scans", (("status", "completed"),))] == 1


def test_a_replaced_worker_is_counted_and_the_daemon_is_ready_again(lab: Lab, daemon: Daemon) -> None:
    with daemon.unix() as c:
        wait_until_ready(c)
        os.kill(worker_pid(daemon, 1), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while per_worker(samples := scrape(c), "netscand_worker_restarts_total") != {"0": 0, "1": 1}:
            assert time.monotonic() < deadline, samples
            time.sleep(0.2)
        wait_until_ready(c)
        assert per_worker(scrape(c), "netscand_worker_up") == {w: 1 for w in WORKERS}


def worker_pid(daemon: Daemon, index: int) -> int:
    """The pid of the daemon's engine worker `index` (the supervisor names it "nsd worker N")."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if name == f"nsd worker {index}" and str(daemon.state_dir).encode() in cmdline:
            return int(entry.name)
    raise AssertionError(f"no engine worker {index} of the daemon in {daemon.state_dir}")
