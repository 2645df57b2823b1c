"""Resume (scan/resume.py), with the real daemon in the lab: a full-range scan whose whole daemon
is SIGKILLed at about 30 %, 60 % and 90 % of its progress, and started again each time on its
state, ends completed with the lab's truth; and no port got more SYNs than 1 + retries, counted
by a capture of our own on the scanner's interface (not the daemon's word). A graceful stop
(SIGTERM, as systemctl restart sends it) suspends the scan the same way, within the supervisor's
wait, and leaves it `running` in the store until the next start. A killed scan's coverage reads
a clean lab as clean; and a scan whose retries are fewer than ARP's own ends."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from contextlib import AbstractContextManager
from pathlib import Path

import dpkt
import httpx
import pytest

from netscand.lab import Lab
from netscand.lab.harness import Daemon, all_hosts, capture, open_ports, start_daemon, stop_daemon, truth_open
from netscand.supervisor import STOP_TIMEOUT
from tests.daemon.test_e2e import wait_for
from tests.daemon.test_faults import kill_tree, killed_mid_scan, start, until

pytestmark = pytest.mark.lab

RETRIES = 3  # the default: the bound below is 1 + RETRIES SYNs per port
# The lab's 12 hosts x 65535 ports at 12000 probes/s: about 65 s of first passes, in 12 shards
# of 65536 probes; progress moves as the shards in hand tell their positions (every 4096 probes).
SCAN = {"profile": "custom", "ports": ["1-65535"], "rate": 12000, "retries": RETRIES}
KILL_AT = (30, 60, 90)
# Stopped, not killed: 12 hosts x 16384 ports at 6000 probes/s, about 35 s of first passes.
STOPPED_SCAN = {"profile": "custom", "ports": ["1-16384"], "rate": 6000, "retries": RETRIES}
STOP_AT = (30, 70)


def progress_past(c: httpx.Client, scan_id: str, percent: int) -> dict:
    def far_enough() -> dict | None:
        scan = c.get(f"/api/v1/scans/{scan_id}").json()
        assert scan["status"] == "running", scan
        # An open port found: the port scan is under way (the ping sweep before it has a
        # progress of its own, which reads 99 % at its end, before the port scan is planned).
        return scan if scan["ports_found"] and scan["progress_percent"] >= percent else None
    return until(far_enough, 120, f"scan {scan_id} never passed {percent} %")


def syns(lab: Lab, pcap: Path) -> Counter[tuple[str, int]]:
    """SYNs the scanner sent, per (address, port)."""
    counted: Counter[tuple[str, int]] = Counter()
    with open(pcap, "rb") as f:
        for _, frame in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(frame).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
                counted[(".".join(map(str, ip.dst)), ip.data.dport)] += 1
    return counted


def syn_capture(lab: Lab, tmp_path: Path) -> AbstractContextManager[Path]:
    bpf = f"src host {lab.truth['scanner']['ip']} and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn"
    return capture(lab, tmp_path / "syns.pcap", bpf, outbound=True)


def assert_within_retries(lab: Lab, pcap: Path, ports: int) -> None:
    sent = syns(lab, pcap)
    assert sent, "the capture saw no SYN"
    most = max(sent.values())
    # The figures for the note (pytest -s): SYNs per port, by count.
    by_count = sorted(Counter(sent.values()).items())
    print(f"resume: {sum(sent.values())} SYNs to {len(sent)} ports; ports by SYNs: {by_count}")
    over = [k for k, n in sent.items() if n > 1 + RETRIES]
    assert not over, f"{len(over)} ports probed more than 1 + {RETRIES} times (most: {most}), e.g. {over[:5]}"
    assert len(sent) == len(all_hosts(lab)) * ports  # and every port was probed


# At its own rate, one group at a time; adaptive (no rate), a group starts in the tail of the one
# before (scan/runner.py _tail_room), so a kill can fall while two run: the lab's on-link hosts'
# port scan and its routed ones'.
@pytest.mark.parametrize("rate", [SCAN["rate"], None], ids=["own-rate", "adaptive"])
def test_a_scan_killed_three_times_resumes_to_the_truth_within_its_retries(
        lab: Lab, tmp_path: Path, rate: int | None) -> None:
    state = tmp_path / "state"
    request = {"target": all_hosts(lab), **SCAN, "rate": rate}
    if rate is None:
        del request["rate"]
    with syn_capture(lab, tmp_path) as pcap:
        d: Daemon = start_daemon(lab, state)
        try:
            with d.unix() as c:
                scan_id = start(c, request)
                for percent in KILL_AT:
                    seen = progress_past(c, scan_id, percent)
                    kill_tree(d)
                    d, c = restarted(lab, state, scan_id, seen)
                done = wait_for(c, scan_id, timeout=300)
                assert (done["status"], done["error"]) == ("completed", None), done
                result = c.get(f"/api/v1/scans/{scan_id}/result").json()
                assert open_ports(result) == truth_open(lab, range(1, 65536))
                # The lab is clean: the shards resumed, whose states started blank, must not read
                # what an earlier life had answered as lost and recovered (engine/coverage.py).
                loss = result["coverage"]["estimated_loss"]
                print(f"resume: coverage {result['coverage']}")
                assert loss is not None and loss < 0.05, result["coverage"]
        finally:
            stop_daemon(d)
        time.sleep(1)  # tcpdump writes out what it holds
    assert_within_retries(lab, pcap, 65535)
    assert "scan.resumed" in (state / "daemon.log").read_text()


def restarted(lab: Lab, state: Path, scan_id: str, seen: dict) -> tuple[Daemon, httpx.Client]:
    """The daemon started again on its state: the scan goes on, with what it had found."""
    d = start_daemon(lab, state)
    c = d.unix()
    again = c.get(f"/api/v1/scans/{scan_id}").json()
    assert again["status"] == "running", again
    assert again["ports_found"] >= seen["ports_found"]  # what it found stayed
    return d, c


def stored(state: Path, scan_id: str) -> tuple:
    """The scan as the store holds it while the daemon is down: what the next start begins from."""
    with sqlite3.connect(f"file:{state / 'netscand.db'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT status, error, finished_at, estimated_completion, progress_percent, ports_found "
                         "FROM scans WHERE id = ?", [scan_id]).fetchone()
    db.close()
    return tuple(row)


def test_a_scan_stopped_twice_resumes_to_the_truth_within_its_retries(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with syn_capture(lab, tmp_path) as pcap:
        d: Daemon = start_daemon(lab, state)
        try:
            c = d.unix()
            scan_id = start(c, {"target": all_hosts(lab), **STOPPED_SCAN})
            for percent in STOP_AT:
                seen = progress_past(c, scan_id, percent)
                c.close()
                t0 = time.monotonic()
                assert stop_daemon(d) == 0
                assert time.monotonic() - t0 < STOP_TIMEOUT  # within the supervisor's wait: nothing killed
                status, error, finished, eta, percent_kept, ports_kept = stored(state, scan_id)
                assert (status, error, finished, eta) == ("running", None, None, None)
                assert percent_kept >= seen["progress_percent"] and ports_kept >= seen["ports_found"]
                d, c = restarted(lab, state, scan_id, seen)
            done = wait_for(c, scan_id, timeout=300)
            assert (done["status"], done["error"]) == ("completed", None), done
            result = c.get(f"/api/v1/scans/{scan_id}/result").json()
            assert open_ports(result) == truth_open(lab, range(1, 16385))
            c.close()
        finally:
            stop_daemon(d)
        time.sleep(1)  # tcpdump writes out what it holds
    assert_within_retries(lab, pcap, 16384)
    log = (state / "daemon.log").read_text()
    assert log.count("scan.suspended") == len(STOP_AT) and "scan.resumed" in log


@pytest.mark.parametrize(("policy", "why"), [
    ('excluded_targets = ["{first}/32"]', "some of its targets are now excluded"),
    ("max_rate = 100.0", "rate 200 is above the policy's maximum of 100"),
])
def test_a_scan_the_policy_of_now_refuses_is_not_resumed_and_fails_with_why(
        lab: Lab, tmp_path: Path, policy: str, why: str) -> None:
    config = tmp_path / "netscand.toml"
    config.write_text("[policy]\n")
    scan_id, found = killed_mid_scan(lab, tmp_path / "state", "--config", str(config))
    config.write_text("[policy]\n" + policy.format(first=all_hosts(lab)[0]) + "\n")
    again = start_daemon(lab, tmp_path / "state", "--config", str(config))
    try:
        with again.unix() as c:
            scan = c.get(f"/api/v1/scans/{scan_id}").json()
            assert scan["status"] == "failed", scan
            assert scan["error"].startswith("cannot resume after a restart: the policy changed: ")
            assert why in scan["error"]
            assert c.get(f"/api/v1/scans/{scan_id}/result").json()["open_ports_total"] >= found
    finally:
        stop_daemon(again)


@pytest.mark.parametrize("retries", [0, 1])
def test_a_scan_with_fewer_retries_than_arps_own_ends_over_silent_on_link_addresses(
        lab: Lab, tmp_path: Path, retries: int) -> None:
    # ARP sends 1 + 2 probes whatever the scan's retries: its retry passes are granted against
    # its own 2, or its shard waits for ever for a grant over the silent addresses of the /28.
    on_link = [h for h in lab.truth["hosts"] if not h["routed"] and int(h["ip"].split(".")[-1]) < 16]
    assert on_link, "the lab has no host in 198.18.0.0/28"
    d = start_daemon(lab, tmp_path / "state")
    try:
        with d.unix() as c:
            scan_id = start(c, {"target": "198.18.0.0/28", "profile": "custom", "ports": [22], "retries": retries})
            done = wait_for(c, scan_id, timeout=30)
            assert (done["status"], done["error"]) == ("completed", None), done
            result = c.get(f"/api/v1/scans/{scan_id}/result").json()
    finally:
        stop_daemon(d)
    # The scanner's own address is in the /28 too, and reported as a device like any other.
    assert {dev["ip"] for dev in result["devices"]} == {h["ip"] for h in on_link} | {lab.truth["scanner"]["ip"]}
