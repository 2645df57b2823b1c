"""Faults, with the real daemon in the lab: killed processes, a reload, a database that stops
taking writes. Whatever happens, a scan ends completed with full results or failed with a
reason (never stuck 'running'), the API keeps serving, and the database stays consistent.

Processes are found by their names (`nsd worker 0`, `nsd control 0`: the supervisor names its
children) among the supervisor's children.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from netscand.lab import Lab
from netscand.lab.harness import Daemon, all_hosts, open_ports, start_daemon, stop_daemon, truth_open
from netscand.supervisor import STOP_TIMEOUT
from tests.daemon.test_e2e import wait_for

pytestmark = pytest.mark.lab

# Long enough to be mid-scan when the fault comes, short enough to complete: 12 hosts x 8192
# ports at 10000 probes/s, about ten seconds.
PORTS = range(1, 8193)
# Never done by the time a test is over (12 hosts x 8192 ports at 200 probes/s: 8 minutes), yet
# finding open ports within seconds whatever order the shards run in: each worker takes one of the
# plan's two shards (ports 1-4096, 4097-8192), and both hold open ports of the lab. (All 65535
# ports made 65536-probe shards of a minute each, many without any open port: the first find
# could come after more than a minute.)
ENDLESS = {"profile": "custom", "ports": ["1-8192"], "rate": 200}
# A paced scan (one SYN per host per second), which cannot resume after a restart.
PACED = {"profile": "custom", "ports": ["1-100"], "host_gap_ms": 1000, "skip_discovery": True}


def medium(lab: Lab) -> dict[str, Any]:
    return {"target": all_hosts(lab), "profile": "custom", "ports": [f"{PORTS[0]}-{PORTS[-1]}"], "rate": 10000}


def children(supervisor: int) -> dict[str, int]:
    """The supervisor's children by name."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if int(rest[1]) == supervisor:
            found[name] = int(entry)
    return found


def until(what: Callable[[], Any], timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if found := what():
                return found
        except httpx.HTTPError:
            pass  # not serving yet
        time.sleep(0.1)
    raise AssertionError(message)


def mid_scan(c: httpx.Client, scan_id: str, ports: int = 1) -> dict[str, Any]:
    """Wait until the running scan has found this many open ports. (Its progress moves by whole
    shards, a worker's share of a plan: too coarse to tell "under way".)"""
    def far_enough() -> dict[str, Any] | None:
        scan = c.get(f"/api/v1/scans/{scan_id}").json()
        assert scan["status"] in ("queued", "running"), scan
        return scan if scan["status"] == "running" and scan["ports_found"] >= ports else None
    # Probes go in a keyed random order, so the first open port comes after a few seconds or,
    # now and then, a minute: waiting up to two costs nothing when it comes sooner.
    return until(far_enough, 120, f"scan {scan_id} did not find {ports} open ports")


def start(c: httpx.Client, body: dict[str, Any]) -> str:
    r = c.post("/api/v1/scans/start", json=body)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def assert_complete(lab: Lab, c: httpx.Client, scan_id: str) -> None:
    """Completed, with every open port of the lab's truth in the scanned range and nothing else."""
    done = wait_for(c, scan_id)
    assert (done["status"], done["error"]) == ("completed", None), done
    result = c.get(f"/api/v1/scans/{scan_id}/result").json()
    assert open_ports(result) == truth_open(lab, PORTS)


def assert_serves_a_new_scan(lab: Lab, c: httpx.Client) -> None:
    host = next(h for h in lab.truth["hosts"] if h["open"])
    scan_id = start(c, {"target": host["ip"], "profile": "custom", "ports": host["open"]})
    scan = wait_for(c, scan_id)
    assert scan["status"] == "completed", scan
    assert open_ports(c.get(f"/api/v1/scans/{scan_id}/result").json()) == {(host["ip"], p) for p in host["open"]}


def assert_consistent(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()


def killed_mid_scan(lab: Lab, state: Path, *args: str) -> tuple[str, int]:
    """An endless scan of the lab started, and its daemon SIGKILLed once it has found an open
    port: the scan's id and the ports it had found."""
    d = start_daemon(lab, state, *args)
    try:
        with d.unix() as c:
            scan_id = start(c, {"target": all_hosts(lab), **ENDLESS})
            found = mid_scan(c, scan_id)["ports_found"]
    finally:
        kill_tree(d)
    return scan_id, found


def kill_tree(d: Daemon) -> None:
    """SIGKILL the supervisor, then its children, as a cgroup kill would (systemd's KillMode):
    the supervisor first, so that it restarts nothing."""
    survivors = children(d.proc.pid)
    d.proc.kill()
    d.proc.wait(10)
    for pid in survivors.values():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    until(lambda: all(not Path(f"/proc/{pid}").exists() for pid in survivors.values()), 10,
          "the daemon's children outlived SIGKILL")


@pytest.fixture
def daemon(lab: Lab, tmp_path: Path) -> Iterator[Daemon]:
    d = start_daemon(lab, tmp_path / "state")
    try:
        yield d
    finally:
        stop_daemon(d)


def test_a_killed_worker_is_replaced_and_the_scan_completes_in_full(lab: Lab, daemon: Daemon) -> None:
    with daemon.unix() as c:
        scan_id = start(c, medium(lab))
        mid_scan(c, scan_id, 8)
        victim = children(daemon.proc.pid)["nsd worker 0"]
        os.kill(victim, signal.SIGKILL)
        # The supervisor forks a new worker 0, and the control process issues its shards again.
        until(lambda: children(daemon.proc.pid).get("nsd worker 0", victim) != victim, 10,
              "worker 0 was not replaced")
        assert_complete(lab, c, scan_id)
    assert "worker[0] exited with -9; restarting" in daemon.log.read_text()


def assert_resumed_and_requeued(c: httpx.Client, ids: list[str], found: int) -> None:
    """The two running scans go on (tests/daemon/test_resume_lab.py follows one to its end),
    keeping what they found; the queued one, never started, waits again in its place and
    starts once they are stopped. It is stopped too, so a new scan finds a place."""
    for scan_id in ids[:2]:
        assert c.get(f"/api/v1/scans/{scan_id}").json()["status"] == "running"
    scan = c.get(f"/api/v1/scans/{ids[2]}").json()
    assert (scan["status"], scan["error"], scan["finished_at"]) == ("queued", None, None), scan
    assert c.get(f"/api/v1/scans/{ids[0]}/result").json()["open_ports_total"] >= found
    for scan_id in ids[:2]:
        assert c.post(f"/api/v1/scans/{scan_id}/stop").json()["status"] == "cancelled"
    until(lambda: c.get(f"/api/v1/scans/{ids[2]}").json()["status"] == "running", 20, "the queued scan never started")
    assert c.post(f"/api/v1/scans/{ids[2]}/stop").json()["status"] == "cancelled"


def test_a_killed_control_process_is_replaced_and_resumes_its_running_scans(
        lab: Lab, daemon: Daemon) -> None:
    with daemon.unix() as c:
        # Two run (max_running_scans), one waits.
        ids = [start(c, {"target": all_hosts(lab), **ENDLESS}) for _ in range(3)]
        mid_scan(c, ids[0])
        found = c.get(f"/api/v1/scans/{ids[0]}").json()["ports_found"]
        victim = children(daemon.proc.pid)["nsd control 0"]
        os.kill(victim, signal.SIGKILL)
        until(lambda: children(daemon.proc.pid).get("nsd control 0", victim) != victim, 10,
              "the control process was not replaced")
        until(lambda: c.get("/healthz").status_code == 200, 20, "the API did not come back")
        assert_resumed_and_requeued(c, ids, found)
        # The engine, whose old plans were dropped, takes new work.
        assert_serves_a_new_scan(lab, c)


def test_a_killed_daemon_restarts_on_its_state_resuming_its_running_scans(
        lab: Lab, tmp_path: Path) -> None:
    d = start_daemon(lab, tmp_path / "state")
    try:
        with d.unix() as c:
            ids = [start(c, {"target": all_hosts(lab), **ENDLESS}) for _ in range(3)]
            mid_scan(c, ids[0])
            time.sleep(0.6)  # one flush period: what it found is in the database
            found = c.get(f"/api/v1/scans/{ids[0]}").json()["ports_found"]
    finally:
        kill_tree(d)
    assert_consistent(tmp_path / "state" / "netscand.db")  # before any recovery: the WAL is sound
    again = start_daemon(lab, tmp_path / "state")
    try:
        with again.unix() as c:
            assert_resumed_and_requeued(c, ids, found)
            assert_serves_a_new_scan(lab, c)
    finally:
        stop_daemon(again)
    assert_consistent(tmp_path / "state" / "netscand.db")


def test_sigterm_suspends_running_scans_cancels_paced_ones_keeps_queued_ones_and_starts_none(
        lab: Lab, daemon: Daemon) -> None:
    with daemon.unix() as c:
        # Two run (max_running_scans): one that can resume and a paced one, which cannot; two wait.
        ids = [start(c, {"target": all_hosts(lab), **spec}) for spec in (ENDLESS, PACED, ENDLESS, ENDLESS)]
        mid_scan(c, ids[0])
        until(lambda: c.get(f"/api/v1/scans/{ids[1]}").json()["status"] == "running", 20, "the paced scan never ran")
    t0 = time.monotonic()
    assert stop_daemon(daemon) == 0
    assert time.monotonic() - t0 < STOP_TIMEOUT  # within the supervisor's own wait: nothing was killed
    assert "control.stopped" in daemon.log.read_text()
    with sqlite3.connect(f"file:{daemon.state_dir / 'netscand.db'}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT status, error, started_at IS NOT NULL, estimated_completion FROM scans "
                            "ORDER BY created_at, rowid")
        ended = [tuple(row) for row in rows]
        kept = conn.execute("SELECT scan_id FROM resume_scans").fetchall()
    conn.close()
    stopped = ("cancelled", "the daemon was stopped")
    # The one left running waits for the next start (test_resume_lab.py follows one to its end),
    # and the queued ones wait to be queued again then (test_a_killed_daemon_restarts_...).
    queued = ("queued", None, 0, None)
    assert ended == [("running", None, 1, None), (*stopped, 1, None), queued, queued]
    assert kept == [(ids[0],)]


def test_sighup_reloads_without_disturbing_a_scan_or_the_api(lab: Lab, daemon: Daemon) -> None:
    with daemon.unix() as c:
        scan_id = start(c, medium(lab))
        mid_scan(c, scan_id, 8)
        with polling(daemon) as failures:
            os.kill(daemon.proc.pid, signal.SIGHUP)
            until(lambda: '"daemon.reloaded"' in daemon.log.read_text(), 20, "the daemon did not reload")
            assert_complete(lab, c, scan_id)
    assert failures == []
    assert daemon.proc.poll() is None


@contextmanager
def polling(d: Daemon) -> Iterator[list[str]]:
    """Ask the API for the scan list every 50 ms meanwhile; yields what went wrong."""
    failures: list[str] = []
    done = threading.Event()

    def poll() -> None:
        with d.unix() as c:
            while not done.is_set():
                try:
                    r = c.get("/api/v1/scans")
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text}")
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                done.wait(0.05)

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        yield failures
    finally:
        done.set()
        thread.join()


@contextmanager
def read_only(db: Path) -> Iterator[None]:
    """The database and its WAL refuse writes, even through descriptors already open, as on a
    file system remounted read-only after an error (the immutable flag; a chmod would only
    stop new opens). SQLite's shared-memory index stays writable, as it must for readers."""
    files = [db, db.with_name(db.name + "-wal")]
    subprocess.run(["chattr", "+i", *map(str, files)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, files)], check=True)


def assert_refuses_new_scans(lab: Lab, c: httpx.Client, reason: str) -> None:
    refused = c.post("/api/v1/scans/start", json={"target": all_hosts(lab)[0], "profile": "quick"})
    assert refused.status_code == 503 and f"({reason})" in refused.json()["detail"], refused.text


def test_a_database_made_read_only_mid_scan_fails_the_scan_and_reads_go_on(
        lab: Lab, daemon: Daemon) -> None:
    db = daemon.state_dir / "netscand.db"
    with daemon.unix() as c:
        earlier = start(c, {"target": all_hosts(lab)[0], "profile": "custom", "ports": [22]})
        wait_for(c, earlier)
        scan_id = start(c, {"target": all_hosts(lab), **ENDLESS})
        mid_scan(c, scan_id)
        with read_only(db):
            scan = until(lambda: _ended(c, scan_id), 20, "the scan did not fail")
            assert scan == c.get(f"/api/v1/scans/{scan_id}").json()  # it stays so
            assert (scan["status"], scan["error"]) == ("failed", "storage: database is read-only"), scan
            assert c.get("/healthz").status_code == 200
            assert c.get(f"/api/v1/scans/{earlier}/result").json()["status"] == "completed"
            assert c.get("/api/v1/scans").json()["total"] == 2
            assert_refuses_new_scans(lab, c, "database is read-only")
        assert_serves_a_new_scan(lab, c)
    stop_daemon(daemon)
    assert_stored_status(db, scan_id, "failed")  # written once the database took writes again
    assert_consistent(db)


def test_a_daemon_restarted_on_a_read_only_database_serves_what_it_has(lab: Lab, tmp_path: Path) -> None:
    scan_id, found = killed_mid_scan(lab, tmp_path / "state")
    db = tmp_path / "state" / "netscand.db"
    again: Daemon | None = None
    try:
        with read_only(db):
            again = start_daemon(lab, tmp_path / "state")
            with again.unix() as c:
                scan = c.get(f"/api/v1/scans/{scan_id}").json()
                assert scan["status"] == "failed" and "while the scan was running" in scan["error"], scan
                assert c.get(f"/api/v1/scans/{scan_id}/result").json()["open_ports_total"] >= found
                assert_refuses_new_scans(lab, c, "database is read-only")
        # Writable again: the failure it could only show reaches the database.
        until(lambda: _stored_status(db, scan_id) == "failed", 10, "the failure was not written")
    finally:
        if again is not None:
            stop_daemon(again)
    assert_consistent(db)


def _stored_status(db: Path, scan_id: str) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        status = conn.execute("SELECT status FROM scans WHERE id = ?", [scan_id]).fetchone()[0]
    conn.close()
    return status


def assert_stored_status(db: Path, scan_id: str, status: str) -> None:
    assert _stored_status(db, scan_id) == status


def _ended(c: httpx.Client, scan_id: str) -> dict[str, Any] | None:
    scan = c.get(f"/api/v1/scans/{scan_id}").json()
    return scan if scan["status"] not in ("queued", "running") else None


@pytest.fixture
def tiny_disk(tmp_path: Path, require_root: None) -> Iterator[Path]:
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0750", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def fill(directory: Path) -> Path:
    """Write a file until the file system has no byte left."""
    ballast = directory / "ballast"
    with open(ballast, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError:
            pass
        try:
            while True:
                out.write(b"\0")
        except OSError:
            pass
    return ballast


def test_a_full_disk_fails_one_scan_and_the_daemon_goes_on(lab: Lab, tmp_path: Path, tiny_disk: Path) -> None:
    # The database on the tiny disk; the log and the socket beside it, where there is room
    # (the flag given last wins).
    d = start_daemon(lab, tmp_path / "home", "--state-dir", str(tiny_disk))
    try:
        with d.unix() as c:
            scan_id = start(c, {"target": all_hosts(lab), **ENDLESS})
            mid_scan(c, scan_id)
            ballast = fill(tiny_disk)
            scan = until(lambda: _ended(c, scan_id), 20, "the scan did not fail")
            assert (scan["status"], scan["error"]) == ("failed", "storage: disk is full"), scan
            assert c.get("/healthz").status_code == 200
            assert c.get(f"/api/v1/scans/{scan_id}/result").status_code == 200
            assert_refuses_new_scans(lab, c, "disk is full")
            ballast.unlink()  # room again: the daemon needs no restart
            assert_serves_a_new_scan(lab, c)
    finally:
        stop_daemon(d)
    assert_stored_status(tiny_disk / "netscand.db", scan_id, "failed")
    assert_consistent(tiny_disk / "netscand.db")
