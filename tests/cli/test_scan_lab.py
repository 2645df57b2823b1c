"""One-shot scans of the lab, checked against its ground truth. Every packet stays in the lab:
the scanner runs inside the lab's scanner namespace, which has no route out."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from netscand.lab import Lab
from netscand.lab.harness import all_hosts
from netscand.scan.ports import top_ports

pytestmark = pytest.mark.lab


def scan_argv(lab: Lab, target: str, *args: str) -> list[str]:
    return lab.scanner_argv([sys.executable, "-m", "netscand", "scan", target, "--json", *args])


def scan(lab: Lab, target: str, *args: str) -> dict:
    proc = subprocess.run(scan_argv(lab, target, *args), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def states(doc: dict) -> dict[tuple[str, int], str]:
    return {(d["ip"], p["port"]): p["state"] for d in doc["devices"] for p in d["ports"]}


def expected(lab: Lab, ports: set[int], state: str) -> set[tuple[str, int]]:
    return {(h["ip"], p) for h in lab.truth["hosts"] for p in h[state] if p in ports}


def check_against_truth(lab: Lab, doc: dict, ports: set[int]) -> None:
    got = states(doc)
    assert {k for k, s in got.items() if s == "open"} == expected(lab, ports, "open")
    assert {k for k, s in got.items() if s == "filtered"} == expected(lab, ports, "filtered")
    devices = {d["ip"]: d for d in doc["devices"]}
    assert set(devices) == {h["ip"] for h in lab.truth["hosts"]}
    for h in lab.truth["hosts"]:
        d = devices[h["ip"]]
        n_open = len([p for p in h["open"] if p in ports])
        n_filtered = len([p for p in h["filtered"] if p in ports])
        assert d.get("not_shown", {}).get("closed") == len(ports) - n_open - n_filtered
        assert d["mac"] == (None if h["routed"] else h["mac"].upper())
    assert doc["status"] == "completed"
    assert doc["open_ports_total"] == len(expected(lab, ports, "open"))


def test_ports_1_to_1024_match_ground_truth(lab: Lab) -> None:
    check_against_truth(lab, scan(lab, ",".join(all_hosts(lab)), "--ports", "1-1024"), set(range(1, 1025)))


def test_top_1000_ports_match_ground_truth(lab: Lab) -> None:
    ports = top_ports(1000)
    doc = scan(lab, ",".join(all_hosts(lab)), "--ports", ",".join(map(str, ports)))
    check_against_truth(lab, doc, set(ports))


def test_closed_and_filtered_told_apart(lab: Lab) -> None:
    host = next(h for h in lab.truth["hosts"] if h["filtered"] and not h["routed"])
    closed = [p for p in (7, 9, 13, 37, 65000) if p not in host["open"] + host["filtered"]]
    ports = host["open"] + host["filtered"] + closed
    got = states(scan(lab, host["ip"], "--ports", ",".join(map(str, ports))))
    assert got == {**{(host["ip"], p): "open" for p in host["open"]},
                   **{(host["ip"], p): "filtered" for p in host["filtered"]},
                   **{(host["ip"], p): "closed" for p in closed}}


def test_on_link_cidr_resolves_macs_and_skips_silent_addresses(lab: Lab) -> None:
    doc = scan(lab, "198.18.0.0/24", "--ports", "1-32")
    on_link = {h["ip"]: h["mac"].upper() for h in lab.truth["hosts"] if not h["routed"]}
    router = lab.truth["router"]
    devices = {d["ip"]: d["mac"] for d in doc["devices"]}
    # Every lab host on the segment, the router, and the scanner itself (through loopback).
    assert devices == {**on_link, router["ips"][0]: router["mac"].upper(),
                       lab.truth["scanner"]["ip"]: None}


def test_routed_subnet_is_scanned_through_the_router(lab: Lab) -> None:
    routed = [h for h in lab.truth["hosts"] if h["routed"]]
    assert routed
    ports = set(range(1, 1025))
    doc = scan(lab, ",".join(h["ip"] for h in routed), "--ports", "1-1024")
    assert {k for k, s in states(doc).items() if s == "open"} == {
        (h["ip"], p) for h in routed for p in h["open"] if p in ports}


def test_loopback_scan(lab: Lab) -> None:
    listener = subprocess.Popen(lab.scanner_argv([sys.executable, "-c", (
        "import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1', 4321)); s.listen(); "
        "print('ready', flush=True); time.sleep(60)")]), stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        doc = scan(lab, "127.0.0.1", "--ports", "4000-4400")
    finally:
        listener.kill()
        listener.wait()
    [device] = doc["devices"]
    assert device["ip"] == "127.0.0.1"
    assert [(p["port"], p["state"]) for p in device["ports"]] == [(4321, "open")]
    assert device["not_shown"] == {"closed": 400}


def test_recall_with_five_percent_loss(lab_factory) -> None:
    with lab_factory(hosts=8, loss_pct=5) as lossy:
        doc = scan(lossy, ",".join(all_hosts(lossy)), "--ports", "-")
        truth = expected(lossy, set(range(1, 65536)), "open")
        found = {k for k, s in states(doc).items() if s == "open"}
        assert found <= truth, "no false positives"
        assert len(found) / len(truth) >= 0.99


def _children(pid: int) -> dict[str, int]:
    """comm -> pid of the direct children of pid."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == pid:
            out[comm] = int(entry.name)
    return out


def test_worker_killed_mid_scan_still_gives_full_result(lab: Lab) -> None:
    proc = subprocess.Popen(scan_argv(lab, ",".join(all_hosts(lab)), "--ports", "-", "--rate", "30000"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # ip netns exec execs in place, so proc.pid is the supervisor.
        deadline = time.monotonic() + 10
        while "nsd worker 0" not in (kids := _children(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(3)  # mid-scan: the whole scan takes about 18 s at this rate
        os.kill(kids["nsd worker 0"], signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "worker[0] exited" in err
    check_against_truth(lab, json.loads(out), set(range(1, 65536)))


def tx_frames(lab: Lab) -> int:
    out = subprocess.run(lab.scanner_argv(["cat", "/sys/class/net/scan0/statistics/tx_packets"]),
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_routed_subnet_discovery_probes_only_live_hosts(lab: Lab) -> None:
    routed = [h for h in lab.truth["hosts"] if h["routed"]]
    router_side = lab.truth["router"]["ips"][1]
    before = tx_frames(lab)
    doc = scan(lab, "198.19.0.0/24", "--ports", "1-1024")
    sent = tx_frames(lab) - before
    assert {d["ip"] for d in doc["devices"]} == {h["ip"] for h in routed} | {router_side}
    router_open = {(router_side, p) for p in lab.truth["router"]["open"]}  # its DNS server
    assert {k for k, s in states(doc).items() if s == "open"} == expected(lab, set(range(1, 1025)), "open") & {
        (h["ip"], p) for h in routed for p in h["open"]} | router_open
    # The 253 silent addresses were pinged, not port-scanned: port-scanning all 256 would send
    # at least 256 x 1024 frames.
    assert sent < 256 * 1024 // 4


def test_skip_discovery_probes_every_address(lab: Lab) -> None:
    routed = [h for h in lab.truth["hosts"] if h["routed"]]
    doc = scan(lab, ",".join(h["ip"] for h in routed), "--ports", "7", "-Pn")
    assert {d["ip"] for d in doc["devices"]} == {h["ip"] for h in routed}


def _read_all(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            return
        if not chunk:
            return
        into += chunk


def test_progress_is_a_live_bar_on_a_terminal_and_nothing_elsewhere(lab: Lab) -> None:
    host = next(h for h in lab.truth["hosts"] if not h["routed"])
    argv = scan_argv(lab, host["ip"], "--ports", "1-1024")
    plain = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0 and plain.stderr == ""  # CI logs and pipes: no bar, no escapes
    terminal, side = pty.openpty()
    shown = bytearray()
    reader = threading.Thread(target=_read_all, args=(terminal, shown))  # a full terminal would stall the scan
    reader.start()
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=side, timeout=300,
                              env={**os.environ, "TERM": "xterm-256color"})
    finally:
        os.close(side)
        reader.join(timeout=10)
        os.close(terminal)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["devices"][0]["ip"] == host["ip"]  # stdout stays the result's alone
    text = shown.decode(errors="replace")
    assert "scanning" in text and "probes" in text and "hosts up" in text
    assert "\x1b[" in text  # drawn and taken away again, as rich does on a terminal
