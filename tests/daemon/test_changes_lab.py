"""The network changes between two scans of one site, and everything that follows a scan sees
exactly those changes (issue 13's first must-show): the daemon's /changes, its inventory, a
webhook receiver inside the lab that fails before it recovers, an SSE client that drops off
mid-scan and comes back with Last-Event-ID, and nmap's own ndiff on the two scans' exports.

Between the scans (netscand.lab.mutate): h2 opens a port, s2's vsftpd is stopped, h1's SSH
daemon announces a newer version, and h3 moves to a new address keeping its MAC. The lab is
this module's own (prefix PREFIX), so its changes never reach another test's lab, and each test
builds it anew, so no test (nor a rerun) meets a network already changed.

h3 is given a vendor's MAC before the first scan: the imitation hosts draw locally administered
MACs, which the inventory flags as randomized and does not trust alone to tell a host, so with
its own MAC a moved h3 would rightly be one device gone and another new.

What ndiff says, and how it maps onto /changes: ndiff pairs hosts by address, so the moved host
is to it one host gone (the old address) and one host appeared (the new); a port opened or
closed is a port whose state changed to or from "open"; a version change is a port of the same
state whose service differs in its version (netscand.lab.ndiff reads ndiff's report).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from sqlite_utils import Database
from standardwebhooks import Webhook

from netscand.daemon import DB_NAME
from netscand.lab import Lab, mutate, receiver
from netscand.lab.harness import Daemon, lab_up, running_daemon
from netscand.lab.ndiff import ndiff
from netscand.statuses import FINISHED
from netscand.store import events as stored_events
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
# How long it stays away at most, waiting for the scan to write events it will have missed: a
# fixed gap may fall wholly in a stretch that writes none (the service probes', say).
SSE_GAP_S = 60.0
# Each host's probes paced this far apart, so the scan lasts seconds and goes on while the SSE
# client is away rather than perhaps ending before it has left.
HOST_GAP_MS = 200
RETRY_FIRST_S, RETRY_MAX_S = 0.2, 1.0  # the webhooks' retries, a fraction of a second apart


@pytest.fixture
def lab(lab_lock: None) -> Iterator[Lab]:
    with lab_up(hosts=4, seed=1, prefix=PREFIX, servers=True) as built:
        mutate.set_mac(built, MOVED, MOVED_MAC)
        yield built


def _config(lab: Lab) -> str:
    receiver_ip = mutate.host(lab, RECEIVER_HOST)["ip"]
    return (f'[webhooks]\nallowed_destinations = ["{receiver_ip}/32"]\n'
            f"retry_first = {RETRY_FIRST_S}\nretry_max = {RETRY_MAX_S}\n")


@pytest.fixture
def daemon(lab: Lab) -> Iterator[Daemon]:
    with running_daemon(lab, _config(lab)) as d:
        yield d


def _targets(lab: Lab) -> list[str]:
    """The changed hosts' addresses and the one the moved host moves to: both scans cover both
    of its addresses, as a scan of a whole segment would."""
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


@dataclass
class Seen:
    """What the daemon said about the two scans, read through each of its consumers' routes."""

    site_id: str
    scans: tuple[str, str]
    webhook_id: str
    events: dict[str, list[dict[str, Any]]]  # each scan's, read whole once it ended
    resumed: list[dict[str, Any]]  # the second scan's, as the client that dropped off read them
    changes: list[dict[str, Any]]  # the second scan's
    devices: dict[str, Any]  # the site's page of the inventory
    moved: dict[str, Any]  # the moved host's device record
    exports: list[Path]  # each scan's nmap XML


def _two_scans(lab: Lab, daemon: Daemon, url: str, where: Path) -> tuple[Seen, str]:
    """A site, a webhook to `url`, a scan, the network changed, the same scan again with a
    client on its events that drops off; then what the daemon says, and the webhook's secret."""
    with daemon.unix() as c:
        site = c.post("/api/v1/sites", json={"name": "lab"})
        assert site.status_code == 201, site.text
        made = c.post("/api/v1/webhooks", json={"url": url, "events": EVENTS})
        assert made.status_code == 201, made.text
        body = {"target": _targets(lab), "profile": "custom", "ports": PORTS, "enable_profiling": True,
                "host_gap_ms": HOST_GAP_MS, "site_id": site.json()["id"]}
        first = _start(c, body)
        assert wait_for(c, first)["status"] == "completed"
        _change_the_network(lab)
        second = _start(c, body)
        resumed = _read_dropping_off_mid_scan(daemon, second)
        assert wait_for(c, second)["status"] == "completed"
        changes = c.get(f"/api/v1/scans/{second}/changes")
        assert changes.status_code == 200, changes.text
        devices = c.get("/api/v1/devices", params={"site_id": site.json()["id"]})
        assert devices.status_code == 200, devices.text
        moved = [d for d in devices.json()["devices"] if (d["mac"] or "").lower() == MOVED_MAC]
        assert len(moved) == 1, devices.json()
        scans = (first, second)
        seen = Seen(site.json()["id"], scans, made.json()["id"], {s: _read_events(daemon, s) for s in scans},
                    resumed, changes.json()["changes"], devices.json(),
                    c.get(f"/api/v1/devices/{moved[0]['id']}").json(), [_nmap_xml(c, s, where) for s in scans])
    return seen, made.json()["secret"]


def test_changes_between_two_scans_reach_every_consumer_exactly_once(
        lab: Lab, daemon: Daemon, tmp_path: Path) -> None:
    hook = receiver.start(lab, RECEIVER_HOST, RECEIVER_PORT, RECEIVER_FAILURES, tmp_path / "received.jsonl")
    moved_from, scanned = mutate.host(lab, MOVED)["ip"], _targets(lab)
    expected = _expected_changes(lab, moved_from)
    seen, secret = _two_scans(lab, daemon, f"{hook.url}/netscand", tmp_path)
    second = seen.scans[1]

    # The second scan's changes are exactly the ones made, each with the scan's site.
    assert Counter(map(_change_key, seen.changes)) == Counter(expected), seen.changes
    assert {(c["scan_id"], c["site_id"]) for c in seen.changes} == {(second, seen.site_id)}

    # One device for the moved host, at its new address, both addresses in its history.
    assert seen.moved["ip"] == MOVED_TO and seen.devices["total"] == len(scanned) - 1  # h3 at two of them
    assert {a["ip"] for a in seen.moved["addresses"]} == {moved_from, MOVED_TO}
    assert ("address_changed", moved_from, MOVED_TO) in {
        (c["kind"], c["before"], c["after"]) for c in seen.moved["changes"]}

    # The SSE client that dropped off mid-scan and resumed missed nothing and got nothing twice.
    assert [e["seq"] for e in seen.resumed] == [e["seq"] for e in seen.events[second]]
    assert seen.resumed == seen.events[second]
    assert ([e["data"] for e in seen.events[second] if e["type"].startswith("change.")]
            == sorted(seen.changes, key=lambda c: c["id"]))

    # The receiver got every change and state event of both scans once, signed, after its 500s.
    wanted = [e for scan_id in seen.scans for e in seen.events[scan_id]
              if e["type"].startswith("change.") or e["type"] == "scan.state"]
    _check_deliveries(daemon, seen.webhook_id, hook, secret, wanted)

    # nmap's ndiff on the two exports sees the same changes, each as often.
    assert _ndiff(*seen.exports) == _as_ndiff(expected)


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


def _read_dropping_off_mid_scan(daemon: Daemon, scan_id: str) -> list[dict[str, Any]]:
    """The scan's events as a client reads them that drops its connection after a few while the
    scan runs, stays away for a while, and comes back with the last id it saw; the events
    written meanwhile are proven written, and replayed."""
    with daemon.unix() as client:
        before = _stream(client, scan_id, None, SSE_FIRST_PART)
    assert len(before) == SSE_FIRST_PART and not _ended(before[-1])  # it left before the scan's end
    at_drop = _stored_seqs(daemon, scan_id, before[-1]["seq"])
    deadline = time.monotonic() + SSE_GAP_S
    while len(missed := _stored_seqs(daemon, scan_id, before[-1]["seq"])) == len(at_drop):
        assert time.monotonic() < deadline, "no event was written while the client was away"
        time.sleep(0.1)
    with daemon.unix() as client:
        after = _stream(client, scan_id, before[-1]["seq"], None)
    assert after and _ended(after[-1])
    assert [e["seq"] for e in after][:len(missed)] == missed  # what it missed, from the first on
    return before + after


def _stored_seqs(daemon: Daemon, scan_id: str, after: int) -> list[int]:
    """The seqs of the scan's events the daemon has written after `after`, read from its store
    as it is now (the stream could not say when it has sent all there is)."""
    with closing(sqlite3.connect(f"file:{daemon.state_dir / DB_NAME}?mode=ro", uri=True)) as conn:
        return [e["seq"] for e in stored_events.after(Database(conn), after, 100_000, scan_id=scan_id)]


def _check_deliveries(daemon: Daemon, webhook_id: str, hook: receiver.Receiver, secret: str,
                      wanted: list[dict[str, Any]]) -> None:
    _wait_until_delivered(daemon, webhook_id, hook, len(wanted))
    received = hook.received()
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


def _wait_until_delivered(daemon: Daemon, webhook_id: str, hook: receiver.Receiver, count: int) -> None:
    """Until the receiver has accepted `count` deliveries and the daemon's log has none pending,
    and then past the longest retry wait: a delivery sent again late would have come by then."""
    deadline = time.monotonic() + 60
    with daemon.unix() as c:
        while True:
            delivered = {r.headers["webhook-id"] for r in hook.received() if r.status == 200}
            log = c.get(f"/api/v1/webhooks/{webhook_id}/deliveries", params={"status": "pending"})
            assert log.status_code == 200, log.text
            if len(delivered) >= count and log.json()["total"] == 0:
                break
            assert time.monotonic() < deadline, (len(delivered), log.json())
            time.sleep(0.2)
        time.sleep(RETRY_MAX_S + 0.5)
        log = c.get(f"/api/v1/webhooks/{webhook_id}/deliveries", params={"status": "delivered"})
        assert log.json()["total"] == count, log.json()


def _nmap_xml(c: httpx.Client, scan_id: str, where: Path) -> Path:
    r = c.get(f"/api/v1/scans/{scan_id}/result", params={"format": "nmap-xml"})
    assert r.status_code == 200, r.text
    path = where / f"{scan_id}.xml"
    path.write_bytes(r.content)
    return path


def _ndiff(a: Path, b: Path) -> Counter[tuple[Any, ...]]:
    """What ndiff says changed from export a to export b, a port's state as whether it is open
    (a closed port may be listed or counted among the extraports) and a service as its product
    and version; every other difference as ndiff has it, and each as often as it says it, so
    that none goes unnoticed, nor one said twice."""
    found: Counter[tuple[Any, ...]] = Counter()
    for d in ndiff(a, b):
        if d.kind == "state":
            found[(d.kind, d.host, d.port, d.protocol, d.before == "open", d.after == "open")] += 1
        elif d.kind == "service":
            found[(d.kind, d.host, d.port, d.protocol, *(s[1:] if isinstance(s, tuple) else s
                                                         for s in (d.before, d.after)))] += 1
        else:
            found[(d.kind, d.host, d.port, d.protocol, d.before, d.after)] += 1
    return found


def _as_ndiff(expected: list[tuple[Any, ...]]) -> Counter[tuple[Any, ...]]:
    """What ndiff should report for these changes (the module docstring's mapping)."""
    found: Counter[tuple[Any, ...]] = Counter()
    for kind, ip, port, protocol, before, after in expected:
        if kind == "address_changed":
            found.update([("host_gone", before, None, None, None, None),
                          ("host_appeared", after, None, None, None, None)])
        elif kind in ("port_opened", "port_closed"):
            found[("state", ip, port, protocol, kind == "port_closed", kind == "port_opened")] += 1
        elif kind == "version_changed":
            found[("service", ip, port, protocol, (UPGRADED_PRODUCT, before), (UPGRADED_PRODUCT, after))] += 1
    return found
