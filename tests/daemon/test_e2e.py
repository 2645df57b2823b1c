"""End to end: the daemon as a subprocess in the lab, driven over its Unix socket and TLS port,
results checked against the lab's ground truth."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netscand.lab import Lab
from netscand.lab.grade import OK, grade
from netscand.lab.harness import Daemon, all_hosts, open_ports, start_daemon, stop_daemon, truth_open
from netscand.scan.ports import top_ports
from netscand.statuses import FINISHED

pytestmark = pytest.mark.lab
NETSCANCTL = str(Path(sys.executable).with_name("netscanctl"))  # the installed entry point


def wait_for(client, scan_id: str, statuses=FINISHED, timeout=120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scan = client.get(f"/api/v1/scans/{scan_id}").json()
        if scan["status"] in statuses:
            return scan
        time.sleep(0.2)
    raise AssertionError(f"scan {scan_id} still {scan['status']}")


def test_quick_scan_over_unix_socket_matches_ground_truth(lab: Lab, daemon: Daemon) -> None:
    with daemon.unix() as c:
        r = c.post("/api/v1/scans/start", json={"target": all_hosts(lab), "profile": "quick"})
        assert r.status_code == 202
        scan = r.json()
        assert r.headers["location"] == f"/api/v1/scans/{scan['id']}"
        assert scan["status"] in ("queued", "running") and scan["profile"] == "quick"
        done = wait_for(c, scan["id"])
        assert done["status"] == "completed" and done["progress_percent"] == 100
        result = c.get(f"/api/v1/scans/{scan['id']}/result").json()
    expected = truth_open(lab, top_ports(100))
    assert open_ports(result) == expected
    assert result["open_ports_total"] == len(expected) == done["ports_found"]
    assert result["devices_found"] == len(lab.truth["hosts"]) == done["hosts_found"]
    macs = {d["ip"]: d["mac"] for d in result["devices"]}
    for h in lab.truth["hosts"]:
        assert macs[h["ip"]] == (None if h["routed"] else h["mac"].upper())
    ips = [d["ip"] for d in result["devices"]]
    assert ips == sorted(ips, key=lambda ip: tuple(map(int, ip.split("."))))


def test_tls_listener_needs_a_token_with_the_right_scope(lab: Lab, daemon: Daemon) -> None:
    reader, scanner = daemon.token("reader", "read"), daemon.token("scanner", "scan")
    body = {"target": all_hosts(lab)[0], "profile": "custom", "ports": [22, 80]}
    with daemon.https(None) as c:
        r = c.get("/api/v1/scans")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert r.headers["content-type"].startswith("application/problem+json")
    with daemon.https("nsd_wrong") as c:
        assert c.get("/api/v1/scans").status_code == 401
    with daemon.https(reader) as c:
        assert c.post("/api/v1/scans/start", json=body).status_code == 403
        assert c.get("/api/v1/scans").status_code == 200
    with daemon.https(scanner) as c:
        r = c.post("/api/v1/scans/start", json=body)
        assert r.status_code == 202
        assert wait_for(c, r.json()["id"])["status"] == "completed"
        assert c.get(f"/api/v1/scans/{r.json()['id']}/result").status_code == 200
    assert "nsd_" not in daemon.log.read_text()  # tokens never reach the logs


def test_stop_cancels_within_a_second_keeping_partial_results(lab: Lab, daemon: Daemon) -> None:
    with daemon.unix() as c:
        scan = c.post("/api/v1/scans/start", json={
            "target": all_hosts(lab), "profile": "custom", "ports": ["1-65535"], "rate": 20000}).json()
        deadline = time.monotonic() + 30
        while c.get(f"/api/v1/scans/{scan['id']}").json()["ports_found"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        t0 = time.monotonic()
        r = c.post(f"/api/v1/scans/{scan['id']}/stop")
        assert r.status_code == 200
        stopped = wait_for(c, scan["id"], timeout=5)
        assert time.monotonic() - t0 < 1.0
        assert stopped["status"] == "cancelled" and stopped["progress_percent"] < 100
        result = c.get(f"/api/v1/scans/{scan['id']}/result").json()
        assert result["status"] == "cancelled" and result["open_ports_total"] >= 3
        assert open_ports(result) <= truth_open(lab, range(1, 65536))
        again = c.post(f"/api/v1/scans/{scan['id']}/stop")
        assert again.status_code == 409


def test_list_paginates_and_filters(lab: Lab, daemon: Daemon) -> None:
    with daemon.unix() as c:
        site = c.post("/api/v1/sites", json={"name": "e2e"}).json()["id"]
        ids = []
        for i in range(3):
            body = {"target": all_hosts(lab)[i], "profile": "custom", "ports": [22]}
            if i == 0:
                body["site_id"] = site
            ids.append(c.post("/api/v1/scans/start", json=body).json()["id"])
        for scan_id in ids:
            wait_for(c, scan_id)
        page1 = c.get("/api/v1/scans", params={"per_page": 2, "page": 1}).json()
        page2 = c.get("/api/v1/scans", params={"per_page": 2, "page": 2}).json()
        assert page1["total"] == page2["total"] == 3 and (page1["page"], page1["per_page"]) == (1, 2)
        assert [s["id"] for s in page1["scans"] + page2["scans"]] == ids[::-1]  # newest first
        assert [s["id"] for s in c.get("/api/v1/scans", params={"site_id": site}).json()["scans"]] == [ids[0]]
        assert c.get("/api/v1/scans", params={"status": "running"}).json()["total"] == 0
        assert c.get("/api/v1/scans", params={"status": "completed"}).json()["total"] == 3
        assert c.get("/api/v1/scans", params={"per_page": 101}).status_code == 422


def test_netscanctl_drives_the_whole_flow(lab: Lab, daemon: Daemon) -> None:
    def ctl(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([NETSCANCTL, "--socket", str(daemon.socket), *argv],
                              capture_output=True, text=True, timeout=120)

    host = next(h for h in lab.truth["hosts"] if h["open"])
    ports = ",".join(map(str, host["open"] + [7]))
    out = ctl("--json", "start", host["ip"], "--profile", "custom", "--ports", ports, "--wait")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "completed"
    assert open_ports(result) == {(host["ip"], p) for p in host["open"]}
    listed = ctl("--json", "list", "--status", "completed")
    assert json.loads(listed.stdout)["scans"][0]["id"] == result["id"]
    assert "completed" in ctl("status", result["id"]).stdout
    assert host["ip"] in ctl("result", result["id"]).stdout
    missing = ctl("status", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 1 and missing.stderr.startswith("netscanctl: 404")
    over_tls = subprocess.run([NETSCANCTL, "--url", daemon.url,
                               "--cacert", str(daemon.cert), "list"], capture_output=True, text=True, timeout=60)
    assert over_tls.returncode == 1 and "401" in over_tls.stderr


def test_sigkill_mid_scan_then_restart_resumes_with_partial_results(lab: Lab, tmp_path) -> None:
    d = start_daemon(lab, tmp_path / "state")
    try:
        with d.unix() as c:
            scan = c.post("/api/v1/scans/start", json={
                "target": all_hosts(lab), "profile": "deep", "rate": 20000}).json()
            deadline = time.monotonic() + 30
            while c.get(f"/api/v1/scans/{scan['id']}").json()["ports_found"] < 3:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            time.sleep(0.6)  # a flush period, so found ports have reached the database
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)
        _kill_orphans(d)
    finally:
        stop_daemon(d)
    again = start_daemon(lab, tmp_path / "state")
    try:
        with again.unix() as c:
            s = c.get(f"/api/v1/scans/{scan['id']}").json()
            # It goes on (tests/daemon/test_resume_lab.py follows one to its end) with what it had.
            assert s["status"] == "running", s
            result = c.get(f"/api/v1/scans/{scan['id']}/result").json()
            assert result["open_ports_total"] >= 3
    finally:
        stop_daemon(again)
    db = sqlite3.connect(tmp_path / "state" / "netscand.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _kill_orphans(d: Daemon) -> None:
    """SIGKILL of the supervisor leaves its children; kill them as systemd's cgroup would."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if str(d.state_dir).encode() in cmdline and b"serve" in cmdline:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    time.sleep(0.5)


def test_host_over_its_time_budget_is_reported_timed_out(lab: Lab, daemon: Daemon) -> None:
    # custom's per-host budget is timeout_ms x retries: 0.2 s, far less than 65535 probes take.
    host = next(h for h in lab.truth["hosts"] if h["open"] and not h["routed"])
    with daemon.unix() as c:
        scan = c.post("/api/v1/scans/start", json={
            "target": host["ip"], "profile": "custom", "ports": ["1-65535"], "timeout_ms": 100,
            "retries": 2, "rate": 20000}).json()
        done = wait_for(c, scan["id"], timeout=30)
        result = c.get(f"/api/v1/scans/{scan['id']}/result").json()
    assert done["status"] == "completed"
    [device] = result["devices"]
    assert device["timed_out"] is True
    assert open_ports(result) <= {(host["ip"], p) for p in host["open"]}


def test_unix_socket_requests_log_the_peer(daemon: Daemon) -> None:
    with daemon.unix() as c:
        assert c.get("/api/v1/scans").status_code == 200
    time.sleep(0.2)
    events = [json.loads(line) for line in daemon.log.read_text().splitlines() if line.startswith("{")]
    requests = [e for e in events if e.get("event") == "api.request" and e.get("listener") == "unix"]
    assert requests and requests[-1]["peer"] == {"uid": os.getuid(), "pid": os.getpid()}


def test_hosts_found_counts_live_hosts_without_open_ports(lab: Lab, daemon: Daemon) -> None:
    routed = {h["ip"] for h in lab.truth["hosts"] if h["routed"]} | {lab.truth["router"]["ips"][1]}
    with daemon.unix() as c:
        scan = c.post("/api/v1/scans/start", json={
            "target": "198.19.0.0/24", "profile": "custom", "ports": [7]}).json()
        done = wait_for(c, scan["id"])
        result = c.get(f"/api/v1/scans/{scan['id']}/result").json()
    assert (done["hosts_found"], done["ports_found"]) == (len(routed), 0)
    assert {d["ip"] for d in result["devices"]} == routed


def test_normal_profile_reports_vendor_and_an_honest_os_guess(lab: Lab, daemon: Daemon) -> None:
    with daemon.unix() as c:
        scan = c.post("/api/v1/scans/start", json={"target": all_hosts(lab), "profile": "normal"}).json()
        assert wait_for(c, scan["id"])["status"] == "completed"
        result = c.get(f"/api/v1/scans/{scan['id']}/result").json()
    devices = {d["ip"]: d for d in result["devices"]}
    assert open_ports(result) == truth_open(lab, top_ports(1000))
    wrong = [g for g in grade(lab.truth, result["devices"], set(top_ports(1000))) if g.verdict != OK]
    assert wrong == []  # the servers' real daemons, through the API as through the CLI
    ports = {(d["ip"], p["port"]): p for d in result["devices"] for p in d["ports"]}
    top = set(top_ports(1000))
    banners = {(h["ip"], int(p)): b for h in lab.truth["hosts"] for p, b in h["banners"].items() if int(p) in top}
    assert banners
    for key, banner in banners.items():
        assert ports[key]["banner"] == banner.strip()  # service detection read what it said
        if banner.startswith("SSH-2.0-"):
            assert ports[key]["service"] == "SSH" and ports[key]["product"] and ports[key]["version"]
    for h in lab.truth["hosts"]:
        d = devices[h["ip"]]
        # Imitation hosts' MACs are locally administered; routed hosts have no MAC to look up.
        assert d["vendor"] == (None if h["routed"] else h.get("vendor", "Randomized (locally administered)"))
        assert d["hostname"] == h["hostname"]  # reverse lookup through the system resolver
        if not d["ports"] or all(p["state"] != "open" for p in d["ports"]):
            continue
        if h["ttl"] == 64:  # a Linux stack with Linux defaults
            assert d["os_guess"] and d["os_guess"].startswith("Linux") and d["os_confidence"] >= 0.5
        else:  # a Linux stack dressed with another TTL: contradicting evidence, no guess
            assert d["os_guess"] is None
