"""The engine against what it meets, with the real daemon in the lab (issue 9): a malformed frame
sent at the scanner mid-scan is counted and dropped, and no worker dies of it; a scan whose
workers keep dying fails with the reason, and the daemon and the next scan go on.

Frames are sent from a lab host's namespace, through an AF_PACKET socket on its eth0, to the
scanner's MAC and address as the lab's truth records them: they never leave the lab's bridge.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pyroute2 import netns

from netscand.engine.clock import TICK_MASK
from netscand.lab import Lab
from netscand.lab.harness import Daemon, all_hosts
from netscand.scan.dispatch import CRASHED
from netscand.scan.work import SPORT_BASE
from tests.daemon.test_faults import (
    ENDLESS, assert_complete, assert_serves_a_new_scan, children, medium, mid_scan, start, until,
)

pytestmark = pytest.mark.lab

WORKERS = ("nsd worker 0", "nsd worker 1")


def ipv4(src: str, dst: str, proto: int, ihl_words: int, payload: bytes) -> bytes:
    options = b"\x01" * (4 * ihl_words - 20)  # NOP
    return struct.pack("!BBHHHBBH4s4s", 0x40 | ihl_words, 0, 4 * ihl_words + len(payload), 0, 0, 64,
                       proto, 0, socket.inet_aton(src), socket.inet_aton(dst)) + options + payload


def hostile_frames(lab: Lab, host: dict) -> list[bytes]:
    """The frame from the issue (IHL=15, 1-byte ICMP payload), and two more of its kind that
    pass the receive filter: TCP to our source ports whose data offset runs past the frame, and
    an ICMP unreachable whose quoted header is cut short."""
    scanner = lab.truth["scanner"]
    eth = (bytes.fromhex(scanner["mac"].replace(":", "")) + bytes.fromhex(host["mac"].replace(":", ""))
           + b"\x08\x00")
    src, dst = host["ip"], scanner["ip"]
    tcp = struct.pack("!HHIIBBHHH", 80, SPORT_BASE + TICK_MASK // 2, 0, 1, 0xF0, 0x12, 1024, 0, 0)
    quote = ipv4(dst, src, 6, 15, b"")[:24]
    return [eth + ipv4(src, dst, 1, 15, b"\x03"),
            eth + ipv4(src, dst, 6, 5, tcp),
            eth + ipv4(src, dst, 1, 5, b"\x03\x03\0\0\0\0\0\0" + quote)]


def send_from(namespace: str, frames: list[bytes], rounds: int, gap: float) -> None:
    """Send the frames `rounds` times from eth0 of a lab namespace (setns moves this thread only)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            netns.setns(namespace, flags=0)
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as s:
                s.bind(("eth0", 0))
                for _ in range(rounds):
                    for frame in frames:
                        s.send(frame)
                    time.sleep(gap)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert not failure, failure


def metrics(c: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = c.get("/metrics")
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def by_label(samples: dict, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: v for (n, labels), v in samples.items() if n == name}


def test_malformed_frames_mid_scan_are_counted_and_no_worker_dies(lab: Lab, daemon: Daemon) -> None:
    host = next(h for h in lab.truth["hosts"] if not h["routed"])
    with daemon.unix() as c:
        scan_id = start(c, medium(lab))
        mid_scan(c, scan_id)
        send_from(host["netns"], hostile_frames(lab, host), rounds=100, gap=0.01)
        assert_complete(lab, c, scan_id)
        samples = metrics(c)
    assert set(by_label(samples, "netscand_worker_restarts_total", "worker").values()) == {0}
    malformed = by_label(samples, "netscand_frames_malformed_total", "reason")
    # The kernel's fanout may give every frame to one worker or spread them: the sum is exact.
    assert malformed["truncated"] == 100  # the frame from the issue
    assert malformed["bad_tcp_header"] == 100 and malformed["bad_icmp_quote"] == 100
    assert malformed["parser_error"] == 0
    assert "Traceback" not in daemon.log.read_text()


def test_a_scan_whose_workers_keep_dying_fails_and_the_daemon_goes_on(lab: Lab, daemon: Daemon) -> None:
    with daemon.unix() as c:
        scan_id = start(c, {"target": all_hosts(lab), **ENDLESS})
        mid_scan(c, scan_id)
        for kills in range(1, 8):
            pids = {name: children(daemon.proc.pid)[name] for name in WORKERS}
            for pid in pids.values():
                os.kill(pid, signal.SIGKILL)
            # Replaced, and ready: a worker killed before it reported ready would count as
            # failing at boot. Then the control process hands it the scan's shards again.
            until(lambda: all(children(daemon.proc.pid).get(n, pid) != pid for n, pid in pids.items()), 10,
                  "the workers were not replaced")
            time.sleep(1.0)
            scan = c.get(f"/api/v1/scans/{scan_id}").json()
            if scan["status"] != "running":
                break
        assert (scan["status"], scan["error"]) == ("failed", CRASHED), scan
        assert kills >= 2  # 3 restarts of workers holding its shards: both workers, twice
        assert daemon.proc.poll() is None, "the supervisor stopped"
        assert "keeps failing at boot" not in daemon.log.read_text()
        assert_serves_a_new_scan(lab, c)
