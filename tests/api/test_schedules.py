"""/api/v1/schedules over the real servers (tests/api/conftest.py): creation checked as a start
is (its validation, the target policy) without starting anything, cron refusals in plain words,
owners and scopes, merge-patch changes, deletion, and the runs the scheduler records.

Nothing here sends a packet: no scan runs in these APIs (max_running=0), and the scheduler is
ticked by hand with a clock of the test's."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netscand.api.models import ScheduleCreate
from netscand.api.problems import INVALID_FIELD, Problem
from netscand.api.schedules import read_body
from netscand.config import PolicyConfig
from netscand.scan.policy import Policy
from netscand.store import sites
from tests.api.conftest import Api, assert_problem

SCHEDULES = "/api/v1/schedules"
BODY = {"name": "lab sweep", "cron": "*/5 * * * *", "target": "198.18.0.0/29", "profile": "quick"}


def create(client: httpx.Client, **changes: Any) -> httpx.Response:
    return client.post(SCHEDULES, json={k: v for k, v in (BODY | changes).items() if v is not None})


def made(client: httpx.Client, **changes: Any) -> dict[str, Any]:
    r = create(client, **changes)
    assert r.status_code == 201, r.text
    return r.json()


def test_a_schedule_is_created_with_its_next_due_time_and_starts_nothing(api: Api) -> None:
    unix = api.unix()
    site = api.store.call("test", sites.create, "lab")["id"].upper()
    r = create(unix, site_id=site, missed="skip", deliver="changes")
    assert r.status_code == 201 and r.headers["location"] == f"{SCHEDULES}/{r.json()['id']}"
    body = r.json()
    assert {k: body[k] for k in ("name", "cron", "target", "profile", "missed", "deliver", "enabled")} == \
        {**BODY, "missed": "skip", "deliver": "changes", "enabled": True}
    assert body["site_id"] == site.lower() and body["ports"] is None and body["runs"] == []
    due = datetime.fromisoformat(body["next_due"])
    assert due.minute % 5 == 0 and due.second == 0
    assert timedelta(0) < due - datetime.now(UTC) <= timedelta(minutes=5)
    assert body["last_due"] is None and body["created_at"] == body["updated_at"]
    assert unix.get("/api/v1/scans").json()["total"] == 0  # checked as a start, not started
    assert unix.get(f"{SCHEDULES}/{body['id']}").json() == body


def test_the_defaults_are_run_once_all_and_enabled(api: Api) -> None:
    body = made(api.unix())
    assert (body["missed"], body["deliver"], body["enabled"]) == ("run_once", "all", True)


@pytest.mark.parametrize("changes, field, words", [
    ({"name": None}, "name", "name is required"),
    ({"cron": None}, "cron", "cron is required"),
    ({"target": None, "cron": "bad"}, "target", "target is required"),  # the start request's fields first
    ({"surprise": 1}, "surprise", "unknown field 'surprise'"),
    ({"cron": "61 * * * *"}, "cron", "out of range"),
    ({"cron": "0 0 31 2 *"}, "cron", "never comes due"),
    ({"cron": "0 * * * * *"}, "cron", "five fields"),
    ({"cron": "*/0 * * * *"}, "cron", "step '0'"),
    ({"cron": 5}, "cron", "Expected a string"),
    ({"missed": "later"}, "missed", "one of run_once, skip"),
    ({"deliver": "some"}, "deliver", "one of all, changes"),
    ({"enabled": 1}, "enabled", "Expected a boolean"),
    ({"ports": [22]}, "ports", "ports can only be given with profile custom"),
    ({"profile": "custom"}, "ports", "ports is required with profile custom"),
    ({"profile": "custom", "ports": ["70000"], "cron": 5}, "ports", "70000"),  # in documented order
    ({"rate": 0.5}, "rate", "rate"),
])
def test_a_body_is_checked_as_a_start_then_as_a_schedule(api: Api, changes: dict[str, Any], field: str,
                                                         words: str) -> None:
    problem = assert_problem(create(api.unix(), **changes), 422, INVALID_FIELD, field)
    assert words in problem["detail"], problem


def test_a_body_that_is_no_object_is_refused(api: Api) -> None:
    assert_problem(api.unix().post(SCHEDULES, json=[BODY]), 422, INVALID_FIELD, "body")


def test_the_target_policy_is_checked_at_creation(api: Api) -> None:
    unix = api.unix()
    assert_problem(create(unix, target="203.0.113.5"), 403, field_="target")
    assert_problem(create(unix, target="198.18.0.0/15"), 422, field_="target")  # too large
    assert_problem(create(unix, target="no such host.invalid"), 422, field_="target")
    # Socket-only targets: the socket may schedule them, a token over HTTPS may not.
    assert made(unix, target="127.0.0.1")["target"] == "127.0.0.1"
    scanner = api.tcp(api.token("scan"))
    assert_problem(create(scanner, target="127.0.0.1"), 403, field_="target")


def test_a_site_that_is_none_is_refused_at_creation(api: Api) -> None:
    problem = assert_problem(create(api.unix(), site_id="3f2b1c9e-8a4d-4e6f-9b1a-2c3d4e5f6a7b"), 422,
                             INVALID_FIELD, "site_id")
    assert "names no site" in problem["detail"]


def test_a_deleted_site_refuses_the_start_and_the_schedule_goes_on(api: Api) -> None:
    unix = api.unix()
    site = api.store.call("test", sites.create, "lab")["id"]
    s = made(unix, cron="* * * * *", site_id=site)
    api.store.call("test", sites.delete, site)
    _tick(api, datetime.fromisoformat(s["next_due"]))
    got = unix.get(f"{SCHEDULES}/{s['id']}").json()
    (run,) = got["runs"]
    assert run["outcome"] == "refused" and run["scan_id"] is None and "names no site" in run["detail"]
    assert got["next_due"] > s["next_due"] and unix.get("/api/v1/scans").json()["total"] == 0


def test_scopes_and_owners(api: Api) -> None:
    reader, alice, bob = (api.tcp(api.token(scope, name)) for scope, name in
                          (("read", "dash"), ("scan", "alice"), ("scan", "bob")))
    assert_problem(create(reader), 403)
    mine = made(alice)
    theirs = made(bob)
    path = f"{SCHEDULES}/{theirs['id']}"
    for r in (alice.get(path), alice.patch(path, json={"enabled": False}), alice.delete(path)):
        assert_problem(r, 404)
    assert [s["id"] for s in alice.get(SCHEDULES).json()["schedules"]] == [mine["id"]]
    assert reader.get(SCHEDULES).json()["total"] == 2 and reader.get(path).status_code == 200
    assert_problem(reader.patch(path, json={"enabled": False}), 403)
    assert_problem(reader.delete(path), 403)
    admin = api.tcp(api.token("admin", "root"))
    assert admin.patch(path, json={"name": "renamed"}).json()["name"] == "renamed"


def test_the_list_is_paginated_newest_first(api: Api) -> None:
    unix = api.unix()
    ids = [made(unix, name=f"s{i}")["id"] for i in range(3)]
    page1 = unix.get(SCHEDULES, params={"per_page": 2}).json()
    page2 = unix.get(SCHEDULES, params={"per_page": 2, "page": 2}).json()
    assert page1["total"] == page2["total"] == 3 and (page1["page"], page1["per_page"]) == (1, 2)
    assert {s["id"] for s in page1["schedules"] + page2["schedules"]} == set(ids)
    assert "runs" not in page1["schedules"][0]
    assert_problem(unix.get(SCHEDULES, params={"per_page": 101}), 422, INVALID_FIELD, "per_page")
    assert_problem(unix.get(SCHEDULES, params={"status": "x"}), 422, INVALID_FIELD, "status")


def test_an_unknown_schedule_is_404(api: Api) -> None:
    unix = api.unix()
    for r in (unix.get(f"{SCHEDULES}/nope"), unix.patch(f"{SCHEDULES}/nope", json={}), unix.delete(f"{SCHEDULES}/nope")):
        assert_problem(r, 404)


def test_patch_is_a_merge_patch_checked_as_a_new_schedule(api: Api) -> None:
    unix = api.unix()
    s = made(unix, profile="custom", ports=[22, "80-81"])
    path = f"{SCHEDULES}/{s['id']}"
    off = unix.patch(path, json={"enabled": False})
    assert off.status_code == 200 and off.json()["enabled"] is False and off.json()["next_due"] is None
    assert off.json()["ports"] == [22, "80-81"] and off.json()["runs"] == []
    on = unix.patch(path, json={"enabled": True, "cron": "0 3 * * *"}).json()
    assert on["next_due"].endswith("T03:00:00Z") and on["cron"] == "0 3 * * *"
    # null removes a field: back to quick, whose ports are its own.
    assert_problem(unix.patch(path, json={"profile": "quick"}), 422, INVALID_FIELD, "ports")
    quick = unix.patch(path, json={"profile": "quick", "ports": None}).json()
    assert (quick["profile"], quick["ports"], quick["next_due"]) == ("quick", None, on["next_due"])
    assert_problem(unix.patch(path, json={"name": None}), 422, INVALID_FIELD, "name")
    assert_problem(unix.patch(path, json={"cron": "* *"}), 422, INVALID_FIELD, "cron")
    assert_problem(unix.patch(path, json={"nope": 1}), 422, INVALID_FIELD, "nope")
    assert_problem(unix.patch(path, json=["x"]), 422, INVALID_FIELD, "body")
    assert_problem(unix.patch(path, json={"target": "203.0.113.5"}), 403, field_="target")
    assert unix.get(path).json()["target"] == BODY["target"]  # a refused patch changes nothing


def test_a_schedule_the_policy_now_refuses_can_still_be_disabled(api: Api) -> None:
    unix = api.unix()
    s = made(unix)
    narrowed = Policy.from_config(PolicyConfig(allowed_targets=["198.19.0.0/16"]))
    api.orchestrator.reconfigure(replace(api.orchestrator.limits.now, policy=narrowed))
    assert unix.patch(f"{SCHEDULES}/{s['id']}", json={"enabled": False}).status_code == 200


def test_delete_removes_the_schedule_and_its_runs_but_not_its_scans(api: Api) -> None:
    unix = api.unix()
    s = made(unix, cron="* * * * *")
    _tick(api, datetime.fromisoformat(s["next_due"]))
    scan_id = unix.get(f"{SCHEDULES}/{s['id']}").json()["runs"][0]["scan_id"]
    r = unix.delete(f"{SCHEDULES}/{s['id']}")
    assert r.status_code == 204 and not r.content
    assert_problem(unix.get(f"{SCHEDULES}/{s['id']}"), 404)
    assert unix.get(f"/api/v1/scans/{scan_id}").status_code == 200


def test_a_due_schedule_starts_its_scan_as_its_owner_and_shows_the_run(api: Api) -> None:
    alice = api.tcp(api.token("scan", "alice"))
    s = made(alice, cron="* * * * *", deliver="changes")
    due = datetime.fromisoformat(s["next_due"])
    _tick(api, due + timedelta(seconds=2))
    got = alice.get(f"{SCHEDULES}/{s['id']}").json()
    (run,) = got["runs"]
    assert (run["due_at"], run["outcome"], run["missed"], run["detail"]) == (s["next_due"], "started", 0, None)
    assert got["last_due"] == s["next_due"] and got["next_due"] > s["next_due"]
    scan = alice.get(f"/api/v1/scans/{run['scan_id']}").json()  # alice's own scan
    assert (scan["target"], scan["profile"], scan["status"]) == (BODY["target"], "quick", "queued")
    stored = api.store.get_scan(run["scan_id"])
    assert stored is not None and stored["idempotency_key"] == f"schedule:{s['id']}:{s['next_due']}"


def _tick(api: Api, now: datetime) -> None:
    """One tick of the daemon's scheduler on the API's loop, at `now`."""
    api.orchestrator.schedules.clock = lambda: now
    api.on_loop(api.orchestrator.schedules.tick)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=8)
_FIELDS = st.sampled_from([*ScheduleCreate.__struct_fields__, "other"])


@given(st.dictionaries(_FIELDS, _JSON | st.sampled_from(["* * * * *", "61 * * * *", "198.18.0.1", "custom"]),
                       max_size=8) | _JSON)
@settings(max_examples=500, deadline=None)
def test_reading_any_body_gives_a_schedule_or_a_422(body: Any) -> None:
    try:
        req, settings_ = read_body(BODY | body if isinstance(body, dict) else body)
    except Problem as problem:
        assert problem.status == 422 and problem.field is not None
    else:
        assert req.target and set(settings_) == {"name", "cron", "missed", "deliver", "enabled"}
