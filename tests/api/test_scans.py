"""Start, status, result, stop and list, with the shapes docs/api.md gives them."""

from __future__ import annotations

import re
import uuid

import httpx

from tests.api.conftest import RESULT_KEYS, STATUS_KEYS, Api, assert_problem, new_site, start, stored

TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def test_start_answers_202_with_location_and_status(unix: httpx.Client) -> None:
    r = start(unix, {"target": "198.18.0.0/28", "profile": "normal"})
    assert r.status_code == 202
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body.keys() == STATUS_KEYS
    assert str(uuid.UUID(body["id"])) == body["id"]
    assert r.headers["location"] == f"/api/v1/scans/{body['id']}"
    assert "idempotent-replayed" not in r.headers
    assert body["status"] == "queued"  # max_running=0: nothing ever runs in these tests
    assert (body["target"], body["profile"], body["site_id"]) == ("198.18.0.0/28", "normal", None)
    assert (body["progress_percent"], body["hosts_found"], body["ports_found"]) == (0, 0, 0)
    assert TIME.fullmatch(body["created_at"])
    assert body["started_at"] is body["estimated_completion"] is body["finished_at"] is body["error"] is None


def test_profile_defaults_to_normal_and_target_list_is_echoed(unix: httpx.Client) -> None:
    body = start(unix, {"target": ["198.18.0.1", "198.18.0.8-198.18.0.9"]}).json()
    assert body["profile"] == "normal"
    assert body["target"] == ["198.18.0.1", "198.18.0.8-198.18.0.9"]


def test_custom_profile_as_in_the_spec(api: Api, unix: httpx.Client) -> None:
    # The spec's own example, with a benchmarking target instead of 10.0.0.0/16.
    spec = {"target": "198.18.0.0/16", "profile": "custom", "ports": [22, 80, 443, 3389, 8080, 8443],
            "timeout_ms": 5000, "max_concurrent": 20, "enable_profiling": True, "enable_cve_match": False}
    r = start(unix, spec)
    assert r.status_code == 202, r.text
    assert stored(api, r.json()["id"])["options"] == {"ports": [22, 80, 443, 3389, 8080, 8443], "timeout_ms": 5000,
                                 "max_concurrent": 20, "enable_profiling": True, "enable_cve_match": False,
                                 "remote": False}


def test_every_option_and_nulls(api: Api, unix: httpx.Client) -> None:
    site = new_site(unix)
    r = start(unix, {"target": "198.18.1.1", "profile": "custom", "site_id": site.upper(),
                     "ports": [1, "100-200", 65535], "timeout_ms": 600000, "max_concurrent": 65536,
                     "enable_profiling": True, "enable_cve_match": True, "rate": 1.5, "retries": 10})
    assert r.status_code == 202, r.text
    assert r.json()["site_id"] == site  # one spelling, lower case
    assert stored(api, r.json()["id"])["options"]["rate"] == 1.5
    # null is "not given"; rate, retries, timeout_ms and max_concurrent tune any profile.
    r = start(unix, {"target": "198.18.1.2", "profile": None, "site_id": None, "ports": None,
                     "rate": 10, "retries": 0, "timeout_ms": 1, "max_concurrent": 1})
    assert r.status_code == 202, r.text
    assert (r.json()["profile"], r.json()["site_id"]) == ("normal", None)


def test_status_is_the_scan_status(unix: httpx.Client) -> None:
    started = start(unix).json()
    r = unix.get(f"/api/v1/scans/{started['id']}")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == started


def test_result_of_a_queued_scan(unix: httpx.Client) -> None:
    site = new_site(unix)
    started = start(unix, {"target": "198.18.0.1", "profile": "quick", "site_id": site}).json()
    r = unix.get(f"/api/v1/scans/{started['id']}/result")
    assert r.status_code == 200
    assert r.json() == {"id": started["id"], "status": "queued", "target": "198.18.0.1", "profile": "quick",
                        "site_id": site, "started_at": None, "finished_at": None, "devices_found": 0,
                        "open_ports_total": 0, "duration_seconds": 0, "page": 1, "per_page": 1000,
                        "devices": []}


def test_result_with_devices_as_in_the_spec(api: Api, unix: httpx.Client) -> None:
    scan_id = start(unix).json()["id"]
    # Results as the orchestrator and the profilers write them, straight into the real store.
    api.store.put_device(scan_id, "198.18.0.10", mac="AA:BB:CC:DD:EE:FF", hostname="gateway.local",
                         vendor="Cisco Systems", os_guess="IOS 15.x", extra={"not_shown": {"closed": 98}})
    api.store.put_ports(scan_id, "198.18.0.10", [
        {"port": 443, "protocol": "tcp", "state": "open", "service": "HTTPS"},
        {"port": 22, "protocol": "tcp", "state": "open", "service": "SSH", "product": "OpenSSH",
         "version": "9.2p1", "banner": "SSH-2.0-OpenSSH_9.2p1", "cpe": "cpe:2.3:a:openbsd:openssh:9.2p1:*:*:*:*:*:*:*",
         "cves": [{"id": "CVE-2023-38408", "status": "vulnerable", "cvss": 9.8, "severity": "critical",
                   "summary": "ssh-agent PKCS#11", "published": "2023-07-20T03:15:10.170",
                   "evidence": "cpe:2.3:a:openbsd:openssh:*:*:*:*:*:*:*:* < 9.3p2"}]},
        {"port": 23, "protocol": "tcp", "state": "filtered", "service": None},
    ])
    api.store.put_device(scan_id, "198.18.0.2", timed_out=True)
    r = unix.get(f"/api/v1/scans/{scan_id}/result")
    assert r.status_code == 200
    body = r.json()
    assert body.keys() == RESULT_KEYS
    assert (body["devices_found"], body["open_ports_total"]) == (2, 2)
    first, second = body["devices"]
    assert first == {"ip": "198.18.0.2", "mac": None, "hostname": None, "vendor": None, "os_guess": None,
                     "timed_out": True, "ports": []}  # sorted by address, not as text
    assert second["mac"] == "AA:BB:CC:DD:EE:FF" and second["not_shown"] == {"closed": 98}
    assert [p["port"] for p in second["ports"]] == [22, 23, 443]
    assert second["ports"][2] == {"port": 443, "protocol": "tcp", "state": "open", "service": "HTTPS"}
    assert second["ports"][0]["cves"][0]["id"] == "CVE-2023-38408"


def test_unknown_scan_is_404_everywhere(unix: httpx.Client) -> None:
    missing = str(uuid.uuid4())
    for r in (unix.get(f"/api/v1/scans/{missing}"), unix.get(f"/api/v1/scans/{missing}/result"),
              unix.post(f"/api/v1/scans/{missing}/stop"), unix.get("/api/v1/scans/not-a-uuid")):
        body = assert_problem(r, 404, "urn:netscand:problem:not-found")
        assert "field" not in body


def test_stop_cancels_then_409(unix: httpx.Client) -> None:
    scan_id = start(unix).json()["id"]
    r = unix.post(f"/api/v1/scans/{scan_id}/stop")
    assert r.status_code == 200
    assert r.json().keys() == STATUS_KEYS
    assert r.json()["status"] == "cancelled" and TIME.fullmatch(r.json()["finished_at"])
    assert unix.get(f"/api/v1/scans/{scan_id}").json()["status"] == "cancelled"
    body = assert_problem(unix.post(f"/api/v1/scans/{scan_id}/stop"), 409, "urn:netscand:problem:conflict")
    assert "cancelled" in body["detail"]


def test_idempotency_key_replays_the_first_scan(api: Api, unix: httpx.Client) -> None:
    first = start(unix, key="retry-1")
    again = start(unix, key="retry-1")
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    other = start(unix, key="retry-2")
    assert other.json()["id"] != first.json()["id"]
    # Keys belong to their owner: the same key from a token is a different scan.
    tcp = api.tcp(api.token("scan"))
    theirs = start(tcp, key="retry-1")
    assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]
    assert start(tcp, key="retry-1").json()["id"] == theirs.json()["id"]
    assert unix.get("/api/v1/scans").json()["total"] == 3


def test_owner_is_unix_or_the_token_name(api: Api, unix: httpx.Client) -> None:
    local = start(unix).json()["id"]
    remote = start(api.tcp(api.token("scan", "ci-runner"))).json()["id"]
    assert stored(api, local)["owner"] == "unix"
    assert stored(api, remote)["owner"] == "ci-runner"


def test_list_pages_newest_first(unix: httpx.Client) -> None:
    ids = []
    for i in range(5):
        # All within a second or so: equal created_at times must still list newest first.
        ids.append(start(unix, {"target": f"198.18.0.{i + 1}", "profile": "quick"}).json()["id"])
    newest_first = ids[::-1]
    r = unix.get("/api/v1/scans")
    assert r.status_code == 200
    body = r.json()
    assert body.keys() == {"scans", "page", "per_page", "total"}
    assert (body["page"], body["per_page"], body["total"]) == (1, 25, 5)
    assert [s["id"] for s in body["scans"]] == newest_first
    assert all(s.keys() == STATUS_KEYS for s in body["scans"])
    pages = [unix.get("/api/v1/scans", params={"page": p, "per_page": 2}).json() for p in (1, 2, 3, 4)]
    assert [[s["id"] for s in p["scans"]] for p in pages] == [newest_first[:2], newest_first[2:4],
                                                                newest_first[4:], []]
    assert {(p["total"], p["per_page"]) for p in pages} == {(5, 2)}
    assert [p["page"] for p in pages] == [1, 2, 3, 4]
    assert len(unix.get("/api/v1/scans", params={"per_page": 100}).json()["scans"]) == 5
    assert unix.get("/api/v1/scans", params={"per_page": 1}).json()["scans"][0]["id"] == ids[-1]


def test_list_filters_by_status_and_site(unix: httpx.Client) -> None:
    site_a, site_b = new_site(unix), new_site(unix)
    a1 = start(unix, {"target": "198.18.0.1", "site_id": site_a}).json()["id"]
    a2 = start(unix, {"target": "198.18.0.2", "site_id": site_a}).json()["id"]
    b1 = start(unix, {"target": "198.18.0.3", "site_id": site_b}).json()["id"]
    start(unix, {"target": "198.18.0.4"})
    unix.post(f"/api/v1/scans/{a2}/stop")

    def ids(**params: str) -> tuple[set[str], int]:
        body = unix.get("/api/v1/scans", params=params).json()
        return {s["id"] for s in body["scans"]}, body["total"]

    assert ids(site_id=site_a) == ({a1, a2}, 2)
    assert ids(site_id=site_a.upper()) == ({a1, a2}, 2)
    assert ids(site_id=site_b) == ({b1}, 1)
    assert ids(status="cancelled") == ({a2}, 1)
    assert ids(status="queued")[1] == 3
    assert ids(status="queued", site_id=site_a) == ({a1}, 1)
    assert ids(status="completed") == (set(), 0)
    assert ids(site_id=str(uuid.uuid4())) == (set(), 0)
    for status in ("queued", "running", "completed", "failed", "cancelled"):
        assert unix.get("/api/v1/scans", params={"status": status}).status_code == 200


def test_health(unix: httpx.Client) -> None:
    r = unix.get("/healthz")
    assert (r.status_code, r.json(), r.headers["content-type"]) == (200, {"status": "ok"}, "application/json")
