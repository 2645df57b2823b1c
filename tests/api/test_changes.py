"""The change routes through the served API: a scan's changes, the changes of a site since a
time, and the diff of two scans, each visible as the scan is; errors as problems naming the
query parameter at fault. Scans here are stored completed with their results (max_running=0
runs none) and merged as Live merges a completed scan."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import pytest

from netscand.cli import ctl
from netscand.scan import changes as changes_module
from netscand.store.compare import Covered
from tests.api.conftest import Api, assert_problem

TARGET = "198.18.0.0/24"
FIRST, LAST = 0xC6120000, 0xC61200FF  # 198.18.0.0/24
PORTS = [21, 22, 80, 8080]
SITE = "123e4567-e89b-12d3-a456-426614174000"
LOG_LINE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} ")


def _device(n: int, ports: dict[int, str | None], mac: str | None = None) -> dict[str, Any]:
    return {"ip": f"198.18.0.{n}", "mac": mac, "hostname": None, "vendor": None, "os_guess": None,
            "ports": [{"port": p, "protocol": "tcp", "state": "open", "service": "SSH",
                       **({"product": "OpenSSH", "version": v} if v else {})} for p, v in sorted(ports.items())]}


BEFORE = [_device(1, {22: "9.2p1"}), _device(2, {22: None}), _device(3, {21: None, 22: None}),
          _device(4, {22: None}, mac="00:1B:21:5E:00:13")]
AFTER = [_device(1, {22: "9.7p1"}), _device(2, {22: None, 8080: None}), _device(3, {22: None}),
         _device(200, {22: None}, mac="00:1B:21:5E:00:13")]
EXPECTED = [("version_changed", "198.18.0.1", 22, "9.2p1", "9.7p1"),
            ("port_opened", "198.18.0.2", 8080, None, "open"),
            ("port_closed", "198.18.0.3", 21, "open", None),
            ("address_changed", "198.18.0.200", None, "198.18.0.4", "198.18.0.200")]


def _scan(api: Api, devices: list[dict[str, Any]], owner: str = "alice", status: str = "completed",
          merged: bool = True, site_id: str | None = SITE, covered: Covered | None = None,
          profile: str = "custom") -> str:
    """A scan stored as ended with `devices` found, merged into the inventory if completed (as
    having covered the whole target, unless `covered` says otherwise)."""
    scan_id = str(uuid.uuid4())
    api.store.create_scan({"id": scan_id, "target": TARGET, "profile": profile, "owner": owner, "status": status,
                           "site_id": site_id, "options": {"ports": PORTS, "enable_profiling": True}})
    api.store.put_devices(scan_id, devices)
    if merged and status == "completed":
        covered = covered or Covered(((FIRST, LAST),), frozenset(PORTS), frozenset(), services=True)
        at = api.store.get_scan(scan_id)["created_at"]
        api.on_loop(lambda: api.orchestrator.live.inventory.merge_scan(scan_id, covered, at))
    return scan_id


def _kinds(changes: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(c["kind"], c["ip"], c.get("port"), c["before"], c["after"]) for c in changes]


def test_a_scans_changes_are_what_it_changed_in_the_inventory(api: Api, unix: httpx.Client) -> None:
    first, second = _scan(api, BEFORE), _scan(api, AFTER)
    r = unix.get(f"/api/v1/scans/{second}/changes")
    assert r.status_code == 200, r.text
    body = r.json()
    assert _kinds(body["changes"]) == EXPECTED and body["total"] == 4
    assert {(c["scan_id"], c["site_id"]) for c in body["changes"]} == {(second, SITE)}
    assert [c["kind"] for c in unix.get(f"/api/v1/scans/{first}/changes").json()["changes"]] == ["device_appeared"] * 4
    page = unix.get(f"/api/v1/scans/{second}/changes", params={"page": 2, "per_page": 3}).json()
    assert _kinds(page["changes"]) == EXPECTED[3:] and (page["page"], page["per_page"], page["total"]) == (2, 3, 4)


def test_a_scan_not_completed_changed_nothing(api: Api, unix: httpx.Client) -> None:
    _scan(api, BEFORE)
    cancelled = _scan(api, [], status="cancelled")
    assert unix.get(f"/api/v1/scans/{cancelled}/changes").json()["changes"] == []


def test_changes_of_a_site_since_a_time(api: Api, unix: httpx.Client) -> None:
    _scan(api, BEFORE, site_id=None)
    _scan(api, BEFORE)
    everything = unix.get("/api/v1/changes").json()
    assert everything["total"] == 8
    site = unix.get("/api/v1/changes", params={"site_id": SITE.upper()}).json()
    assert site["total"] == 4 and {c["site_id"] for c in site["changes"]} == {SITE}
    last = everything["changes"][-1]["at"]
    assert all(c["at"] >= last for c in unix.get("/api/v1/changes", params={"since": last}).json()["changes"])
    assert unix.get("/api/v1/changes", params={"since": "2999-01-01T00:00:00Z"}).json()["changes"] == []


def test_bad_queries_name_their_parameter(api: Api, unix: httpx.Client) -> None:
    scan_id = _scan(api, BEFORE)
    for params, field in (({"since": "yesterday"}, "since"), ({"site_id": "nope"}, "site_id"),
                          ({"per_page": 0}, "per_page"), ({"page": "x"}, "page"), ({"sort": "ip"}, "sort")):
        assert_problem(unix.get("/api/v1/changes", params=params), 422, field_=field)
    assert_problem(unix.get(f"/api/v1/scans/{scan_id}/changes", params={"per_page": 1001}), 422, field_="per_page")
    assert_problem(unix.get(f"/api/v1/scans/{scan_id}/diff"), 422, field_="against")
    assert_problem(unix.get(f"/api/v1/scans/{scan_id}/diff", params={"against": "x"}), 422, field_="against")


def test_another_owners_scan_is_not_found_for_a_scan_token(api: Api) -> None:
    bobs, alices = _scan(api, BEFORE, owner="bob"), _scan(api, AFTER, owner="alice")
    alice = api.tcp(api.token("scan", "alice"))
    assert_problem(alice.get(f"/api/v1/scans/{bobs}/changes"), 404)
    assert_problem(alice.get(f"/api/v1/scans/{alices}/diff", params={"against": bobs}), 404)
    assert_problem(alice.get(f"/api/v1/scans/{uuid.uuid4()}/changes"), 404)
    assert alice.get(f"/api/v1/scans/{alices}/changes").status_code == 200
    reader = api.tcp(api.token("read"))
    assert reader.get(f"/api/v1/scans/{bobs}/changes").status_code == 200
    assert reader.get(f"/api/v1/scans/{alices}/diff", params={"against": bobs}).status_code == 200


def test_the_diff_of_two_scans_compares_their_results(api: Api, unix: httpx.Client) -> None:
    first, second = _scan(api, BEFORE, merged=False), _scan(api, AFTER, merged=False)
    r = unix.get(f"/api/v1/scans/{second}/diff", params={"against": first})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["scan_id"], body["against"], body["total"]) == (second, first, 4)
    assert sorted(_kinds(body["changes"])) == sorted(EXPECTED)
    assert unix.get(f"/api/v1/scans/{first}/diff", params={"against": first}).json()["changes"] == []
    back = unix.get(f"/api/v1/scans/{first}/diff", params={"against": second}).json()["changes"]
    assert sorted(c["kind"] for c in back) == ["address_changed", "port_closed", "port_opened", "version_changed"]


def test_the_diff_needs_two_completed_scans(api: Api, unix: httpx.Client) -> None:
    done, running = _scan(api, BEFORE, merged=False), _scan(api, [], status="running")
    assert_problem(unix.get(f"/api/v1/scans/{done}/diff", params={"against": running}), 409)
    assert_problem(unix.get(f"/api/v1/scans/{done}/diff", params={"against": str(uuid.uuid4())}), 404)


def test_the_diff_compares_over_what_each_scan_kept_as_covered(api: Api, unix: httpx.Client) -> None:
    """Kept as the scans ran (their policy's exclusions too), not rebuilt from their targets."""
    narrow = Covered(((FIRST, FIRST + 10),), frozenset(PORTS), frozenset(), services=True)
    first = _scan(api, [*BEFORE, _device(50, {22: None})])
    second = _scan(api, AFTER, covered=narrow)  # .50 was excluded: not gone
    r = unix.get(f"/api/v1/scans/{second}/diff", params={"against": first})
    assert r.status_code == 200, r.text
    assert sorted(_kinds(r.json()["changes"])) == sorted(EXPECTED)


def test_a_scan_whose_coverage_was_not_kept_nor_resolves_is_not_compared(api: Api, unix: httpx.Client) -> None:
    first = _scan(api, BEFORE, merged=False, profile="retired")  # a profile no longer known
    second = _scan(api, AFTER, merged=False)
    problem = assert_problem(unix.get(f"/api/v1/scans/{second}/diff", params={"against": first}), 409)
    assert first in problem["detail"]
    kept = _scan(api, BEFORE, profile="retired")  # merged: what it covered was kept
    assert unix.get(f"/api/v1/scans/{second}/diff", params={"against": kept}).status_code == 200


def test_a_diff_is_computed_once_for_its_pages(api: Api, unix: httpx.Client) -> None:
    first, second = _scan(api, BEFORE, merged=False), _scan(api, AFTER, merged=False)
    page1 = unix.get(f"/api/v1/scans/{second}/diff", params={"against": first, "per_page": 2}).json()
    api.store.call("forget", lambda db: db.execute("DELETE FROM ports WHERE scan_id = ?", [second]))
    page2 = unix.get(f"/api/v1/scans/{second}/diff", params={"against": first, "per_page": 2, "page": 2}).json()
    assert page1["total"] == page2["total"] == 4
    assert sorted(_kinds(page1["changes"] + page2["changes"])) == sorted(EXPECTED)


def test_scans_too_large_to_diff_are_refused(api: Api, unix: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(changes_module, "MAX_DEVICES", 7)
    first, second = _scan(api, BEFORE, merged=False), _scan(api, AFTER, merged=False)
    problem = assert_problem(unix.get(f"/api/v1/scans/{second}/diff", params={"against": first}), 409)
    assert "8 devices" in problem["detail"]


def test_netscanctl_shows_changes_and_diffs(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = _scan(api, BEFORE), _scan(api, AFTER)
    socket = ["--socket", str(api.socket_path)]
    assert ctl.main([*socket, "changes", "--scan", second]) == 0
    shown = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert any(line.endswith("198.18.0.1 version_changed 22/tcp 9.2p1 9.7p1") for line in shown), shown
    assert "4 changes" in shown
    assert ctl.main([*socket, "--json", "diff", second, "--against", first]) == 0
    # the served API's log lines share stdout
    body = json.loads("".join(line for line in capsys.readouterr().out.splitlines(keepends=True)
                              if not LOG_LINE.match(line)))
    assert (body["scan_id"], body["against"], len(body["changes"])) == (second, first, 4)
    assert ctl.main([*socket, "changes", "--since", "2999-01-01T00:00:00Z"]) == 0
    assert "0 changes" in capsys.readouterr().out
    assert ctl.main([*socket, "changes", "--since", "soon"]) == 1
    assert "422" in capsys.readouterr().err
