"""Live events of a real daemon's scan in the lab: a client that drops off mid-scan and comes
back with Last-Event-ID gets every event of the store once, in order; what they tell matches the
scan's result; and a daemon stopped with streams open ends them and exits without waiting."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from netscand.lab import Lab
from netscand.lab.harness import Daemon, all_hosts, open_ports, running_daemon, stop_daemon
from netscand.scan.events import PROGRESS
from netscand.supervisor import STOP_TIMEOUT
from tests.api.test_events import stream

pytestmark = pytest.mark.lab
# Long enough to drop off and come back while it runs (8 hosts: about 8 s at this rate).
SCAN = {"profile": "custom", "ports": ["1-20000"], "rate": 20000}
FIRST_PART = 5  # events read before the client drops off
AWAY_S = 1.0


@pytest.fixture
def daemon(lab: Lab) -> Iterator[Daemon]:
    with running_daemon(lab) as d:
        yield d


def stored_events(daemon: Daemon, scan_id: str) -> list[dict[str, Any]]:
    """The scan's events as the daemon's store holds them, in order."""
    db = sqlite3.connect(f"file:{daemon.state_dir / 'netscand.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute("SELECT seq, type, scan_id, site_id, at, data FROM events WHERE scan_id = ? "
                          "ORDER BY seq", [scan_id]).fetchall()
    finally:
        db.close()
    return [dict(row) | {"data": orjson.loads(row["data"])} for row in rows]


def start(client: httpx.Client, lab: Lab) -> str:
    r = client.post("/api/v1/scans/start", json={"target": all_hosts(lab), **SCAN})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_a_client_that_drops_off_mid_scan_misses_nothing_and_gets_nothing_twice(lab: Lab, daemon: Daemon) -> None:
    with daemon.unix() as c:
        scan_id = start(c, lab)
        path = f"/api/v1/scans/{scan_id}/events"
        with daemon.unix() as first:
            before = stream(first, path, count=FIRST_PART)
        assert c.get(f"/api/v1/scans/{scan_id}").json()["status"] == "running"  # dropped off mid-scan
        time.sleep(AWAY_S)
        with daemon.unix() as again:
            after = stream(again, path, **{"Last-Event-ID": str(before[-1]["seq"])})
        result = c.get(f"/api/v1/scans/{scan_id}/result").json()
    got = before + after
    assert got == stored_events(daemon, scan_id)
    assert [e["seq"] for e in got] == sorted({e["seq"] for e in got})
    assert [e["data"]["status"] for e in got if e["type"] == "scan.state"] == ["queued", "running", "completed"]
    assert got[-1]["type"] == "scan.state"  # the stream ended with it
    # Each host up and port open once, as the result has them; progress each time it moved.
    kinds = Counter(e["type"] for e in got)
    assert kinds["host.up"] == result["devices_found"] and kinds["port.found"] == result["open_ports_total"]
    assert {e["data"]["ip"] for e in got if e["type"] == "host.up"} == {d["ip"] for d in result["devices"]}
    assert {(e["data"]["ip"], e["data"]["port"]) for e in got if e["type"] == "port.found"} == open_ports(result)
    moved = [tuple(e["data"][k] for k in PROGRESS) for e in got if e["type"] == "scan.progress"]
    assert moved and all(a != b for a, b in zip(moved, moved[1:], strict=False))


def test_stopping_the_daemon_ends_its_streams_and_is_not_held_up_by_them(lab: Lab, daemon: Daemon) -> None:
    with daemon.unix() as c:
        scan_id = start(c, lab)
    got: dict[str, list[dict[str, Any]]] = {}

    def read(name: str, path: str) -> None:
        with daemon.unix() as client:
            got[name] = stream(client, path)

    readers = [threading.Thread(target=read, args=args, daemon=True)
               for args in (("scan", f"/api/v1/scans/{scan_id}/events"), ("all", "/api/v1/events?after=0"))]
    for reader in readers:
        reader.start()
    time.sleep(1.5)  # connected, the scan under way
    t0 = time.monotonic()
    assert stop_daemon(daemon) == 0
    assert time.monotonic() - t0 < 10
    for reader in readers:
        reader.join(5)
        assert not reader.is_alive()
    for events in got.values():
        # Ended by the stop, with no state after `running`: the scan is suspended, to resume.
        states = [e["data"]["status"] for e in events if e["type"] == "scan.state"]
        assert states[-1] == "running", events


def test_a_client_that_reads_nothing_does_not_hold_the_daemons_stop(lab: Lab, daemon: Daemon) -> None:
    # A backlog larger than the socket's buffers: the stream blocks in a send to a client that
    # never reads, which must neither hold the stop past the supervisor's kill nor keep the
    # store from closing.
    db = sqlite3.connect(daemon.state_dir / "netscand.db", timeout=10)
    with db:
        db.executemany("INSERT INTO events (type, scan_id, site_id, owner, at, data) VALUES (?, NULL, NULL, NULL, ?, ?)",
                       [("change.device_gone", "2026-12-07T10:00:00Z", orjson.dumps({"pad": "x" * 400}).decode())
                        for _ in range(20000)])
    db.close()
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(str(daemon.socket))
    stuck.sendall(b"GET /api/v1/events?after=0 HTTP/1.1\r\nHost: netscand\r\n\r\n")  # then reads nothing
    try:
        time.sleep(1.5)  # the stream fills the buffers and blocks
        t0 = time.monotonic()
        assert stop_daemon(daemon) == 0
        assert time.monotonic() - t0 < STOP_TIMEOUT
    finally:
        stuck.close()
    assert "control.stopped" in daemon.log.read_text()  # the store closed: not killed
