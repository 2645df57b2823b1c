"""The network changes between two scans of one site, and everything that follows a scan sees
exactly those changes (issue 13's first must-show): the daemon's /changes, its inventory, a
webhook receiver inside the lab that fails before it recovers, an SSE client that drops off
mid-scan and comes back with Last-Event-ID, and nmap's own ndiff on the two scans' exports.

Between the scans (netscand.lab.mutate): h2 opens a port, s2's vsftpd is stopped, h1's SSH
daemon announces a newer version, and h3 moves to a new address keeping its MAC. The lab is
this module's own (prefix PREFIX), so its changes never reach another test's lab.

h3 is given a vendor's MAC before the first scan: the imitation hosts draw locally administered
MACs, which the inventory flags as randomized and does not trust alone to tell a host, so with
its own MAC a moved h3 would rightly be one device gone and another new.

What ndiff says, and how it maps onto /changes: ndiff pairs hosts by address only, so the moved
host is to it one host gone (the old address, or its state up -> down) and one host new; a port
opened or closed is a port whose state changed to or from "open"; a version change is a port
of the same state whose service element differs in its version.
"""

from __future__ import annotations

import json
import subprocess
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from standardwebhooks import Webhook

from netscand.lab import Lab, mutate, receiver
from netscand.lab.harness import Daemon, lab_up, running_daemon
from netscand.statuses import FINISHED
from tests.daemon.test_e2e import wait_for

pytestmark = pytest.mark.lab

PREFIX = "nsc"
PORTS = [21, 22, 80, 143, 6379, 8080]  # each host's open ones among them, and the ports that change
OPENED = ("h2", 8080)
STOPPED = ("s2", "vsftpd", 21)
UPGRADED = ("h1", 22, "9.2p1", "9.7p1")
UPGRADED_PRODUCT, NEWER_SSH = "OpenSSH", "SSH-2.0-OpenSSH_9.7p1 Debian-5\r\n"
MOVED, MOVED_MAC, MOVED_TO = "h3", "00:1b:21:5e:00:13", "198.18.0.200"  # Intel's OUI
RECEIVER_HOST, RECEIVER_PORT, RECEIVER_FAILURES = "h4", 9000, 3
EVENTS = ["change.*", "scan.state"]
SSE_FIRST_PART = 2  # events read before the client drops off
SSE_GAP_S = 1.0  # how long it stays away, while the scan goes on


@pytest.fixture(scope="module")
def lab(lab_lock: None) -> Iterator[Lab]:
    with lab_up(hosts=4, seed=1, prefix=PREFIX, servers=True) as built:
        mutate.set_mac(built, MOVED, MOVED_MAC)
        yield built


def _config(lab: Lab) -> str:
    receiver_ip = mutate.host(lab, RECEIVER_HOST)["ip"]
    # Retries a fraction of a second apart, so the receiver's failures cost the test little.
    return (f'[webhooks]\nallowed_destinations = ["{receiver_ip}/32"]\n'
            "retry_first = 0.2\nretry_max = 1.0\n")


@pytest.fixture
def daemon(lab: Lab) -> Iterator[Daemon]:
    with running_daemon(lab, _config(lab)) as d:
        yield d


def _targets(lab: Lab) -> list[str]:
    names = (UPGRADED[0], OPENED[0], MOVED, STOPPED[0])
    return sorted({mutate.host(lab, n)["ip"] for n in names} | {MOVED_TO})


def _change_the_network(lab: Lab) -> None:
    mutate.open_port(lab, *OPENED)
    mutate.stop_daemon(lab, *STOPPED[:2])
    mutate.swap_banner(lab, UPGRADED[0], UPGRADED[1], NEWER_SSH)
    mutate.move_host(lab, MOVED, MOVED_TO)


def _start(c: httpx.Client, body: dict[str, Any]) -> str:
    r = c.post("/api/v1/scans/start", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def test_changes_between_two_scans_reach_every_consumer_exactly_once(
        lab: Lab, daemon: Daemon, tmp_path: Path) -> None:
    hook = receiver.start(lab, RECEIVER_HOST, RECEIVER_PORT, RECEIVER_FAILURES, tmp_path / "received.jsonl")
    moved_from = mutate.host(lab, MOVED)["ip"]
    expected = _expected_changes(lab, moved_from)
    with daemon.unix() as c:
        site = c.post("/api/v1/sites", json={"name": "lab"})
        assert site.status_code == 201, site.text
        site_id = site.json()["id"]
        made = c.post("/api/v1/webhooks", json={"url": f"{hook.url}/netscand", "events": EVENTS})
        assert made.status_code == 201, made.text
        secret = made.json()["secret"]
        body = {"target": _targets(lab), "profile": "custom", "ports": PORTS, "enable_profiling": True,
                "site_id": site_id}
        first = _start(c, body)
        assert wait_for(c, first)["status"] == "completed"
        _change_the_network(lab)
        second = _start(c, body)
        resumed = _read_dropping_off_mid_scan(daemon, c, second)
        assert wait_for(c, second)["status"] == "completed"
        full = {scan_id: _read_events(daemon, scan_id) for scan_id in (first, second)}
        changes = c.get(f"/api/v1/scans/{second}/changes")
        assert changes.status_code == 200, changes.text
        devices = c.get("/api/v1/devices", params={"site_id": site_id})
        assert devices.status_code == 200, devices.text
        moved = [d for d in devices.json()["devices"] if (d["mac"] or "").lower() == MOVED_MAC]
        assert len(moved) == 1, devices.json()
        moved_device = c.get(f"/api/v1/devices/{moved[0]['id']}").json()
        exports = [_nmap_xml(c, scan_id, tmp_path) for scan_id in (first, second)]

    # The second scan's changes are exactly the ones made, each with the scan's site.
    got = changes.json()["changes"]
    assert Counter(map(_change_key, got)) == Counter(expected), got
    assert {(g["scan_id"], g["site_id"]) for g in got} == {(second, site_id)}

    # One device for the moved host, at its new address, both addresses in its history.
    assert moved_device["ip"] == MOVED_TO and devices.json()["total"] == len(_targets(lab)) - 1
    assert {a["ip"] for a in moved_device["addresses"]} == {moved_from, MOVED_TO}
    assert ("address_changed", moved_from, MOVED_TO) in {
        (ch["kind"], ch["before"], ch["after"]) for ch in moved_device["changes"]}

    # The SSE client that dropped off mid-scan and resumed missed nothing and got nothing twice.
    assert [e["seq"] for e in resumed] == [e["seq"] for e in full[second]]
    assert resumed == full[second]
    assert [e["data"] for e in full[second] if e["type"].startswith("change.")] == got

    # The receiver got every change and state event of both scans once, signed, after its 500s.
    wanted = [e for scan_id in (first, second) for e in full[scan_id]
              if e["type"].startswith("change.") or e["type"] == "scan.state"]
    _check_deliveries(hook, secret, wanted)

    # nmap's ndiff on the two exports sees the same changes.
    assert _ndiff(*exports) == _as_ndiff(expected)


def _expected_changes(lab: Lab, moved_from: str) -> list[tuple[Any, ...]]:
    """(kind, ip, port, protocol, before, after) of each change made between the scans."""
    ip = {name: mutate.host(lab, name)["ip"] for name in (OPENED[0], STOPPED[0], UPGRADED[0])}
    return [
        ("port_opened", ip[OPENED[0]], OPENED[1], "tcp", None, "open"),
        ("port_closed", ip[STOPPED[0]], STOPPED[2], "tcp", "open", None),
        ("version_changed", ip[UPGRADED[0]], UPGRADED[1], "tcp", UPGRADED[2], UPGRADED[3]),
        ("address_changed", MOVED_TO, None, None, moved_from, MOVED_TO),
    ]


def _change_key(change: dict[str, Any]) -> tuple[Any, ...]:
    return (change["kind"], change["ip"], change.get("port"), change.get("protocol"), change["before"],
            change["after"])


def _events_url(scan_id: str) -> str:
    return f"/api/v1/scans/{scan_id}/events"


def _envelope(sse: Any) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(sse.data)
    assert (sse.id, sse.event) == (str(envelope["seq"]), envelope["type"])
    return envelope


def _ended(envelope: dict[str, Any]) -> bool:
    return envelope["type"] == "scan.state" and envelope["data"]["status"] in FINISHED


def _stream(client: httpx.Client, scan_id: str, last_id: int | None, limit: int | None) -> list[dict[str, Any]]:
    """A scan's events from its stream, after `last_id`, until it ends or `limit` were read."""
    headers = {} if last_id is None else {"Last-Event-ID": str(last_id)}
    got: list[dict[str, Any]] = []
    with connect_sse(client, "GET", _events_url(scan_id), headers=headers) as source:
        assert source.response.status_code == 200
        for sse in source.iter_sse():
            got.append(_envelope(sse))
            if _ended(got[-1]) or len(got) == limit:
                break
    return got


def _read_events(daemon: Daemon, scan_id: str) -> list[dict[str, Any]]:
    """Every event of a finished scan, read from its stream's beginning."""
    with daemon.unix() as client:
        return _stream(client, scan_id, None, None)


def _read_dropping_off_mid_scan(daemon: Daemon, c: httpx.Client, scan_id: str) -> list[dict[str, Any]]:
    """The scan's events as a client reads them that drops its connection after a few while the
    scan runs, stays away for a while, and comes back with the last id it saw."""
    with daemon.unix() as client:
        before = _stream(client, scan_id, None, SSE_FIRST_PART)
    assert len(before) == SSE_FIRST_PART and not _ended(before[-1])
    assert c.get(f"/api/v1/scans/{scan_id}").json()["status"] == "running"  # dropped off mid-scan
    time.sleep(SSE_GAP_S)
    with daemon.unix() as client:
        after = _stream(client, scan_id, before[-1]["seq"], None)
    assert after and _ended(after[-1])
    return before + after


def _check_deliveries(hook: receiver.Receiver, secret: str, wanted: list[dict[str, Any]]) -> None:
    deadline = time.monotonic() + 60
    while True:
        received = hook.received()
        delivered = {r.headers["webhook-id"] for r in received if r.status == 200}
        if len(delivered) >= len(wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [r.status for r in received[:RECEIVER_FAILURES]] == [500] * RECEIVER_FAILURES
    by_id: dict[str, list[receiver.Received]] = {}
    for r in received:
        assert r.method == "POST" and r.path == "/netscand"
        Webhook(secret).verify(r.body, r.headers)  # raises on a bad signature
        by_id.setdefault(r.headers["webhook-id"], []).append(r)
    for attempts in by_id.values():
        # Retried with the same bytes until delivered, and never again once delivered.
        assert len({a.body for a in attempts}) == 1
        assert [a.status for a in attempts][-1] == 200 and [a.status for a in attempts].count(200) == 1
    failed_first = {r.headers["webhook-id"] for r in received[:RECEIVER_FAILURES]}
    assert failed_first <= set(by_id) and all(len(by_id[i]) > 1 for i in failed_first)
    payloads = [json.loads(attempts[0].body) for attempts in by_id.values()]
    got = Counter(json.dumps([p["type"], p["data"]], sort_keys=True) for p in payloads)
    assert got == Counter(json.dumps([e["type"], e["data"]], sort_keys=True) for e in wanted)
    assert all(p["timestamp"] for p in payloads)


def _nmap_xml(c: httpx.Client, scan_id: str, where: Path) -> Path:
    r = c.get(f"/api/v1/scans/{scan_id}/result", params={"format": "nmap-xml"})
    assert r.status_code == 200, r.text
    path = where / f"{scan_id}.xml"
    path.write_bytes(r.content)
    return path


def _ndiff(a: Path, b: Path) -> set[tuple[Any, ...]]:
    """ndiff --xml's differences: ("gone"|"new", ip) for a host in one scan only (or up in one
    only), ("open", ip, port, protocol, before, after) for a port whose state changed (whether
    it was open, whether it is: a closed port may be listed or counted among the extraports),
    ("service", ip, port, protocol, before, after) for one whose service changed, each side
    (product, version), and ("os", ip) for a host whose OS matches changed."""
    out = subprocess.run(["ndiff", "--xml", str(a), str(b)], capture_output=True, text=True, timeout=60)
    assert out.returncode in (0, 1), out.stderr  # 1: the scans differ
    found: set[tuple[Any, ...]] = set()
    for hostdiff in ET.fromstring(out.stdout).iter("hostdiff"):
        only = [side for side in ("a", "b") if hostdiff.find(f"{side}/host") is not None]
        if only:
            found.add(("gone" if only == ["a"] else "new", _address(hostdiff.find(f"{only[0]}/host"))))
            continue
        host = hostdiff.find("host")
        assert host is not None
        ip = _address(host)
        states = [host.find(f"{side}/status") for side in ("a", "b")]
        if all(s is not None for s in states):
            up = [s.get("state") == "up" for s in states]  # type: ignore[union-attr]
            found.add(("gone" if up == [True, False] else "new", ip))
        for portdiff in host.iter("portdiff"):
            found.add(_port_difference(ip, portdiff))
        if host.find("os/a") is not None or host.find("os/b") is not None:
            found.add(("os", ip))
    return found


def _address(host: ET.Element | None) -> str:
    assert host is not None
    return next(a.get("addr", "") for a in host.iter("address") if a.get("addrtype") == "ipv4")


def _port_difference(ip: str, portdiff: ET.Element) -> tuple[Any, ...]:
    same = portdiff.find("port")
    if same is not None:  # the same state, another service
        sides = [same.find(f"{side}/service") for side in ("a", "b")]
        return ("service", ip, int(same.get("portid", "0")), same.get("protocol"),
                *((s.get("product"), s.get("version")) if s is not None else None for s in sides))
    ports = [portdiff.find(f"{side}/port") for side in ("a", "b")]
    assert all(p is not None for p in ports)
    states = [p.find("state") for p in ports]  # type: ignore[union-attr]
    return ("open", ip, int(ports[0].get("portid", "0")), ports[0].get("protocol"),  # type: ignore[union-attr]
            *(s is not None and s.get("state") == "open" for s in states))


def _as_ndiff(expected: list[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    """What ndiff should report for these changes (the module docstring's mapping)."""
    found: set[tuple[Any, ...]] = set()
    for kind, ip, port, protocol, before, after in expected:
        if kind == "address_changed":
            found |= {("gone", before), ("new", after)}
        elif kind in ("port_opened", "port_closed"):
            found.add(("open", ip, port, protocol, kind == "port_closed", kind == "port_opened"))
        elif kind == "version_changed":
            found.add(("service", ip, port, protocol, (UPGRADED_PRODUCT, before), (UPGRADED_PRODUCT, after)))
    return found
