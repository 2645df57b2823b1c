"""GET /api/v1/cve/status and POST /api/v1/scans/{id}/rematch over a real CveStore (the lab's
fixture records, tests/vuln/fixtures) and a real scan store, every answer checked against the
document (conftest's conform)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx

from netscand import compose
from netscand.scan.cves import NO_DATA
from netscand.vuln.store import CveStore
from tests.api.conftest import Api, assert_problem, start

FIXTURES = Path(__file__).parents[1] / "vuln" / "fixtures"
CONFLICT = "urn:netscand:problem:conflict"
SSH_PORT = {"port": 22, "protocol": "tcp", "state": "open", "service": "SSH", "product": "OpenSSH",
            "version": "9.2p1", "banner": "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3",
            "cpe": "cpe:2.3:a:openbsd:openssh:9.2:p1:*:*:*:*:*:*"}


def _load(api: Api) -> None:
    store = CveStore(compose.cve_path(api.socket_path.parent))  # the API's, beside its store
    store.import_nvd([FIXTURES / "nvd-lab.json"])
    store.import_tracker(FIXTURES / "debian-tracker.json")


def _finished_scan(api: Api, client: httpx.Client, cve: dict[str, Any] | None) -> str:
    """A cancelled scan holding an OpenSSH server, matched (`cve`) or not (None) when it ended."""
    scan_id = start(client).json()["id"]
    assert client.post(f"/api/v1/scans/{scan_id}/stop").status_code == 200
    api.store.put_devices(scan_id, [{"ip": "198.18.0.230", "os_guess": "Linux", "ports": [SSH_PORT]}])
    api.store.update_scan(scan_id, cve=cve)
    return scan_id


def test_status_before_and_after_an_import(api: Api, unix: httpx.Client) -> None:
    before = unix.get("/api/v1/cve/status").json()
    assert before == {"loaded": False, "sources": [], "updated_at": None, "age_seconds": None}
    _load(api)
    with api.tcp(api.token("read")) as reader:
        after = reader.get("/api/v1/cve/status").json()
    assert after["loaded"] and after["updated_at"] and after["age_seconds"] >= 0
    assert {s["name"]: s["records"] for s in after["sources"]} == {"nvd": 32, "debian-tracker": 31}


def test_status_needs_a_token_over_tls(api: Api) -> None:
    with api.tcp() as anonymous:
        assert_problem(anonymous.get("/api/v1/cve/status"), 401)


def test_rematch_matches_a_stored_result_against_the_data_of_now(api: Api, unix: httpx.Client) -> None:
    scan_id = _finished_scan(api, unix, {"cve_data": {"loaded": False, "note": NO_DATA}})
    result = unix.get(f"/api/v1/scans/{scan_id}/result").json()
    assert result["cve_data"] == {"loaded": False, "note": NO_DATA} and "cve_counts" not in result
    assert "cves" not in result["devices"][0]["ports"][0]
    _load(api)
    r = unix.post(f"/api/v1/scans/{scan_id}/rematch", params={"per_page": 10})
    assert r.status_code == 200
    body = r.json()
    assert body["per_page"] == 10 and body["cve_data"]["loaded"]
    [device] = body["devices"]
    findings = {f["id"]: f for f in device["ports"][0]["cves"]}
    assert findings["CVE-2024-6387"]["status"] == "fixed_by_distribution"
    assert findings["CVE-2024-6387"]["fixed_version"] == "1:9.2p1-2+deb12u3"
    vulnerable = [f for f in findings.values() if f["status"] == "vulnerable"]
    assert sum(device["cve_counts"].values()) == len(vulnerable) > 0
    assert body["cve_counts"] == device["cve_counts"]
    assert unix.get(f"/api/v1/scans/{scan_id}/result").json() == body | {"per_page": 1000}  # stored


def test_rematch_refuses_what_it_does_not_apply_to(api: Api, unix: httpx.Client) -> None:
    unmatched = _finished_scan(api, unix, None)
    assert "did not match CVEs" in assert_problem(unix.post(f"/api/v1/scans/{unmatched}/rematch"), 409,
                                                  CONFLICT)["detail"]
    queued = start(unix).json()["id"]
    assert "queued" in assert_problem(unix.post(f"/api/v1/scans/{queued}/rematch"), 409, CONFLICT)["detail"]
    assert_problem(unix.post(f"/api/v1/scans/{uuid.uuid4()}/rematch"), 404, "urn:netscand:problem:not-found")
    assert_problem(unix.post(f"/api/v1/scans/{queued}/rematch", params={"per_page": 0}), 422, field_="per_page")


def test_rematch_is_a_write_with_the_scopes_of_stop(api: Api, unix: httpx.Client) -> None:
    scan_id = _finished_scan(api, unix, {"cve_data": {"loaded": False, "note": NO_DATA}})
    with api.tcp(api.token("read")) as reader:
        assert_problem(reader.post(f"/api/v1/scans/{scan_id}/rematch"), 403)
    with api.tcp(api.token("scan", "mallory")) as other:
        assert_problem(other.post(f"/api/v1/scans/{scan_id}/rematch"), 404)  # another owner's
    with api.tcp(api.token("admin")) as admin:
        assert admin.post(f"/api/v1/scans/{scan_id}/rematch").status_code == 200
