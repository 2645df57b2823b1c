"""Results a page at a time, deleting scans (by request and by age), and the target policy
checked again when a queued scan starts (issue 9)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from netscand.api.models import RESULT_PER_PAGE
from netscand.config import PolicyConfig
from netscand.store.clock import utc_now
from tests.api.conftest import MAX_TARGET_ADDRESSES, Api, ApiRunner, assert_problem, make_limits, start, stored

INVALID = "urn:netscand:problem:invalid-field"
NETSCANCTL = str(Path(sys.executable).with_name("netscanctl"))  # the installed entry point


def with_devices(api: Api, count: int) -> str:
    """A scan with `count` devices, each with one open and one closed port, as the orchestrator
    writes them (addresses chosen so that text order is not address order)."""
    scan_id = start(api.unix()).json()["id"]
    api.store.put_devices(scan_id, [
        {"ip": f"198.18.{i // 256}.{i * 7 % 256}", "mac": None, "hostname": f"h{i}", "vendor": None, "os_guess": None,
         "extra": None, "timed_out": None,
         "ports": [{"port": 22, "protocol": "tcp", "state": "open", "service": "SSH"},
                   {"port": 23, "protocol": "tcp", "state": "closed", "service": None}]}
        for i in range(1, count + 1)
    ])
    return scan_id


def result(client: httpx.Client, scan_id: str, **params: Any) -> dict[str, Any]:
    r = client.get(f"/api/v1/scans/{scan_id}/result", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_results_come_a_page_at_a_time_counting_the_whole(api: Api) -> None:
    scan_id = with_devices(api, 7)
    whole = result(api.unix(), scan_id)
    assert (whole["page"], whole["per_page"], whole["devices_found"], whole["open_ports_total"]) == (1, 1000, 7, 7)
    order = [d["ip"] for d in whole["devices"]]
    assert order == sorted(order, key=lambda ip: tuple(map(int, ip.split("."))))
    pages = [result(api.unix(), scan_id, page=p, per_page=3) for p in (1, 2, 3, 4)]
    assert [[d["ip"] for d in p["devices"]] for p in pages] == [order[:3], order[3:6], order[6:], []]
    assert {(p["devices_found"], p["open_ports_total"], p["per_page"]) for p in pages} == {(7, 7, 3)}
    assert [d for p in pages for d in p["devices"]] == whole["devices"]  # ports and all


def test_bad_result_queries_are_422(api: Api) -> None:
    scan_id = with_devices(api, 1)
    unix = api.unix()
    for params, field in (({"per_page": 0}, "per_page"), ({"per_page": 1001}, "per_page"), ({"page": 0}, "page"),
                          ({"page": "x"}, "page"), ({"status": "queued"}, "status"),
                          ([("page", "1"), ("page", "2")], "page")):
        assert_problem(unix.get(f"/api/v1/scans/{scan_id}/result", params=params), 422, INVALID, field)
    assert result(unix, scan_id, per_page=1000, page=2**31 - 1)["devices"] == []


def test_delete_takes_a_finished_scan_with_its_results(api: Api) -> None:
    unix = api.unix()
    scan_id = with_devices(api, 3)
    problem = assert_problem(unix.delete(f"/api/v1/scans/{scan_id}"), 409, "urn:netscand:problem:conflict")
    assert "queued" in problem["detail"] and "stop it first" in problem["detail"]
    unix.post(f"/api/v1/scans/{scan_id}/stop")
    r = unix.delete(f"/api/v1/scans/{scan_id}")
    assert r.status_code == 204 and r.content == b""
    for path in (f"/api/v1/scans/{scan_id}", f"/api/v1/scans/{scan_id}/result"):
        assert_problem(unix.get(path), 404, "urn:netscand:problem:not-found")
    assert_problem(unix.delete(f"/api/v1/scans/{scan_id}"), 404)
    with sqlite3.connect(api.store.path) as db:
        assert db.execute("SELECT count(*) FROM devices").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM ports").fetchone() == (0,)
    db.close()


def test_a_deleted_scans_idempotency_key_may_be_used_again(api: Api) -> None:
    unix = api.unix()
    first = start(unix, key="nightly").json()["id"]
    unix.post(f"/api/v1/scans/{first}/stop")
    assert unix.delete(f"/api/v1/scans/{first}").status_code == 204
    again = start(unix, {"target": "198.18.0.2"}, key="nightly")
    assert again.status_code == 202 and "idempotent-replayed" not in again.headers


def finished(api: Api, days_ago: float) -> str:
    scan_id = start(api.unix()).json()["id"]
    api.unix().post(f"/api/v1/scans/{scan_id}/stop")
    api.on_loop(api.orchestrator.io.drain)  # the stop's own finished_at is written first, not after ours
    api.store.update_scan(scan_id, finished_at=utc_now(-timedelta(days=days_ago)))
    return scan_id


def test_scans_past_the_retention_age_are_deleted(api_factory: ApiRunner) -> None:
    api = api_factory(retention_days=30)
    old, recent = finished(api, 31), finished(api, 29)
    queued = start(api.unix()).json()["id"]
    api.store.put_devices(old, [{"ip": "198.18.0.1", "ports": [{"port": 1, "protocol": "tcp", "state": "open"}]}])
    assert api.on_loop(api.orchestrator.expire) == 1
    assert api.store.get_scan(old) is None and api.store.result(old) == []
    assert stored(api, recent)["status"] == "cancelled" and stored(api, queued)["status"] == "queued"
    assert api.on_loop(api.orchestrator.expire) == 0


def test_retention_zero_keeps_scans_for_ever(api_factory: ApiRunner) -> None:
    api = api_factory(retention_days=0)
    ancient = finished(api, 10_000)
    assert api.on_loop(api.orchestrator.expire) == 0
    assert api.store.get_scan(ancient) is not None


def test_a_queued_scan_the_policy_now_refuses_fails_without_running(api: Api) -> None:
    unix = api.unix()
    routed = start(unix, {"target": "198.19.0.1", "profile": "quick"}).json()["id"]
    remote = start(api.tcp(api.token("scan")), {"target": "198.18.0.1", "profile": "quick"}).json()["id"]
    # A reload narrows the policy: 198.19.0.0/16 is no longer allowed, and 198.18.0.0/16 is
    # for the Unix socket only. Both scans were accepted before; neither may start now.
    narrower = PolicyConfig(allowed_targets=["198.18.0.0/16"], socket_only_targets=["198.18.0.0/16"],
                            max_target_addresses=MAX_TARGET_ADDRESSES)
    api.on_loop(lambda: api.orchestrator.reconfigure(make_limits(narrower, max_running=2)))
    for scan_id, reason in ((routed, "198.19.0.1 is outside the allowed targets (198.18.0.0/16)"),
                            (remote, "198.18.0.0/16 may only be scanned by clients of the daemon's Unix socket "
                                      "(policy.socket_only_targets)")):
        scan = unix.get(f"/api/v1/scans/{scan_id}").json()
        assert (scan["status"], scan["started_at"]) == ("failed", None), scan
        assert scan["error"] == f"the target policy changed while the scan was queued: {reason}"
        assert scan["finished_at"] is not None
    assert api.orchestrator.active == {} and not api.orchestrator.queue  # nothing reached the engine


def test_a_long_store_call_holds_up_no_other_request(api: Api) -> None:
    """While the store is busy with a large batch (a second or so of writing), requests that
    need it wait for it on the store's threads, and the event loop answers everything else."""
    scan_id = start(api.unix()).json()["id"]
    batch = [{"ip": f"198.18.{i >> 8}.{i & 255}", "ports": [{"port": 22, "protocol": "tcp", "state": "open"}]}
             for i in range(60_000)]
    writer = threading.Thread(target=api.store.put_devices, args=(scan_id, batch))
    writer.start()
    time.sleep(0.2)  # well into the batch
    reading: list[httpx.Response] = []
    reader = threading.Thread(target=lambda: reading.append(api.unix().get(f"/api/v1/scans/{scan_id}")))
    reader.start()
    with api.unix() as client:
        began = time.monotonic()
        for _ in range(10):
            assert client.get("/healthz").status_code == 200
            assert client.get("/api/v1/openapi.json").status_code == 200
        took = time.monotonic() - began
    assert writer.is_alive() and reader.is_alive(), "the batch was too quick to show anything"
    assert took < 0.5, took
    writer.join(30)
    reader.join(30)
    assert reading[0].status_code == 200


def netscanctl(api: Api, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NETSCANCTL, "--socket", str(api.socket_path), *argv], capture_output=True, text=True,
                          timeout=60)


def test_netscanctl_result_follows_the_pages(api: Api) -> None:
    scan_id = with_devices(api, RESULT_PER_PAGE[1] + 7)
    out = netscanctl(api, "--json", "result", scan_id)
    assert out.returncode == 0, out.stderr
    got = orjson.loads(out.stdout)
    first = result(api.unix(), scan_id)
    second = result(api.unix(), scan_id, page=2)
    assert len(got["devices"]) == got["devices_found"] == RESULT_PER_PAGE[1] + 7
    assert got["devices"] == first["devices"] + second["devices"]
    assert got.keys() == first.keys() - {"page", "per_page"}
    assert str(first["devices"][0]["ip"]) in netscanctl(api, "result", scan_id).stdout


def test_netscanctl_delete(api: Api) -> None:
    scan_id = start(api.unix()).json()["id"]
    refused = netscanctl(api, "delete", scan_id)
    assert refused.returncode == 1 and refused.stderr.startswith("netscanctl: 409 Scan not finished")
    api.unix().post(f"/api/v1/scans/{scan_id}/stop")
    deleted = netscanctl(api, "delete", scan_id)
    assert deleted.returncode == 0 and deleted.stdout.strip() == f"{scan_id}  deleted"
    missing = netscanctl(api, "delete", str(uuid.uuid4()))
    assert missing.returncode == 1 and missing.stderr.startswith("netscanctl: 404")
