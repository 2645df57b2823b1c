"""netscand as the service a sysadmin installs: a scan is a request to a daemon already running.

`netscand serve` is started in the lab's scanner namespace at its defaults (no config file) and
waited for until /readyz says its workers are up; only then does the clock start. The scan is
the one-shot's request (`netscand scan TARGETS --ports P` is profile custom with those ports,
nothing else), POSTed over the Unix socket, polled until it ends, and its result read page by
page. The daemon's start-up is paid once per installation, so it is left out: CPU is the delta
of the daemon tree's counters over the scan, memory the tree's peaks during it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
from runners import POLL_S, Measured, MemoryWatch, Result, Targets, link_counters, tree

from netscand import config
from netscand.lab import Lab
from netscand.lab.harness import (
    Daemon,
    DaemonStartError,
    Found,
    open_ports,
    running_daemon,
    wait_workers_ready,
)
from netscand.scan.profiles import taking
from netscand.statuses import FINISHED

TOOL = "netscand-daemon"
STATUS_EVERY_S = 0.1  # a status poll costs the daemon a request's CPU: a watching client's pace
RESULT_PAGE = 1000  # the API's largest page
CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the process tree under `root` so far, its reaped children's
    included (cutime, cstime): a long-lived daemon is no child of ours, so getrusage cannot."""
    user = system = 0
    for pid in tree(root):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # exited meanwhile: its time is in its parent's cutime once reaped
        # After comm's closing ')' the fields are fixed: the first is the 3rd (state), so
        # utime, stime, cutime, cstime (14th-17th) are at 11-14.
        fields = stat.rpartition(")")[2].split()
        utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
        user += utime + cutime
        system += stime + cstime
    return user / CLK_TCK, system / CLK_TCK


def reset_peaks(root: int) -> None:
    """VmHWM is a process's peak over its life; writing 5 to clear_refs (Linux >= 4.0) starts it
    again from the current RSS, so the peaks read after are the scan's, not the start-up's."""
    for pid in tree(root):
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            pass  # exited meanwhile


def request_body(targets: Targets) -> dict[str, object]:
    """What `netscand scan TARGETS --ports P` asks for (cli/scan.py): --ports implies the profile
    that takes ports, and nothing else is given."""
    return {"target": list(targets.specs), "profile": taking("ports").name, "ports": [targets.port_spec]}


def whole_result(c: httpx.Client, scan_id: str) -> Found:
    """The open TCP ports of every page of the scan's result."""
    found: Found = set()
    page = 1
    while True:
        r = c.get(f"/api/v1/scans/{scan_id}/result", params={"page": page, "per_page": RESULT_PAGE})
        r.raise_for_status()
        doc = r.json()
        found |= open_ports(doc)
        if not doc["devices"] or page * RESULT_PAGE >= doc["devices_found"]:
            return found
        page += 1


def _scan(lab: Lab, daemon: Daemon, targets: Targets, timeout: float) -> tuple[Measured, Found, str]:
    root = daemon.proc.pid
    with daemon.unix() as c:
        reset_peaks(root)
        watch = MemoryWatch(root)
        tx0, rx0 = link_counters(lab)
        user0, sys0 = tree_cpu(root)
        start = time.monotonic()
        r = c.post("/api/v1/scans/start", json=request_body(targets))
        if r.status_code != 202:
            raise RuntimeError(f"the daemon refused the scan: {r.status_code} {r.text[:300]}")
        scan_id, status, asked, timed_out = r.json()["id"], "queued", start, False
        while status not in FINISHED:
            watch.sample()
            now = time.monotonic()
            if now - start > timeout:
                timed_out = True
                c.post(f"/api/v1/scans/{scan_id}/stop")
                break
            if now - asked >= STATUS_EVERY_S:
                asked = now
                status = c.get(f"/api/v1/scans/{scan_id}").json()["status"]
            else:
                time.sleep(POLL_S)
        wall = time.monotonic() - start
        user1, sys1 = tree_cpu(root)
        tx1, rx1 = link_counters(lab)
        found = whole_result(c, scan_id)
    run = Measured(wall, tx1 - tx0, rx1 - rx0, watch.hwm_sum, watch.hwm_max, watch.pss_sum, watch.procs,
                   user1 - user0, sys1 - sys0, 0 if status == "completed" else 1, timed_out, "", "")
    note = "timed out: stopped, result read" if timed_out else "" if status == "completed" else f"scan {status}"
    return run, found, note


def scan_daemon(lab: Lab, targets: Targets, timeout: float) -> Result:
    """The scan as a request to `netscand serve` at its defaults, started for it and stopped after."""
    # start_daemon passes --workers 2, as the tests want; the last --workers wins, and this one is
    # what the daemon and the one-shot take without it (engine.workers 0: one per core).
    try:
        with running_daemon(lab, None, "--workers", str(config.load(None).workers)) as daemon:
            with daemon.unix() as c:
                wait_workers_ready(c)
            run, found, note = _scan(lab, daemon, targets, timeout)
    except (DaemonStartError, RuntimeError, httpx.HTTPError, ValueError) as exc:
        # One cell's failure is a row saying so, not the end of a matrix of many minutes.
        run = Measured(0.0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 1, False, "", str(exc))
        found, note = set(), f"failed: {str(exc).splitlines()[0][:120]}"
    return Result(TOOL, targets, run, found, targets.truth(lab), note)
