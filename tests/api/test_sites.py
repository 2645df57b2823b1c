"""The site routes: create (201, Location), list, read, rename, delete (204; 409 while a scan of
the site is queued or running), names checked and unique, scopes; and a scan may name only a
site that exists."""

from __future__ import annotations

import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netscand.api.problems import CONFLICT, INVALID_FIELD, NOT_FOUND
from netscand.api.sites import site_name
from netscand.api.problems import Problem
from tests.api.conftest import Api, assert_problem, new_site, start

SITES = "/api/v1/sites"


def test_a_site_is_created_read_renamed_listed_and_deleted(unix: httpx.Client) -> None:
    r = unix.post(SITES, json={"name": "Head office"})
    assert r.status_code == 201, r.text
    site = r.json()
    assert r.headers["location"] == f"{SITES}/{site['id']}" and site["name"] == "Head office"
    assert unix.get(f"{SITES}/{site['id'].upper()}").json() == site  # any case
    renamed = unix.patch(f"{SITES}/{site['id']}", json={"name": "HQ"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "HQ"
    other = new_site(unix, "Branch")
    listed = unix.get(SITES, params={"per_page": 1}).json()
    assert (listed["total"], [s["id"] for s in listed["sites"]]) == (2, [other])  # by name
    assert unix.delete(f"{SITES}/{site['id']}").status_code == 204
    for response in (unix.get(f"{SITES}/{site['id']}"), unix.delete(f"{SITES}/{site['id']}"),
                     unix.patch(f"{SITES}/{site['id']}", json={"name": "x"}), unix.get(f"{SITES}/not-a-uuid"),
                     unix.get(f"{SITES}/{uuid.uuid4()}")):
        assert_problem(response, 404, NOT_FOUND)


def test_names_are_unique(unix: httpx.Client) -> None:
    new_site(unix, "a")
    b = new_site(unix, "b")
    assert_problem(unix.post(SITES, json={"name": "a"}), 409, CONFLICT)
    assert_problem(unix.patch(f"{SITES}/{b}", json={"name": "a"}), 409, CONFLICT)


@pytest.mark.parametrize("body", [
    {}, {"name": ""}, {"name": " padded"}, {"name": "padded "}, {"name": "x" * 101}, {"name": "tab\there"},
    {"name": "line\nbreak"}, {"name": "zero\u200bwidth"}, {"name": 5}, {"name": None}, {"name": "a", "extra": 1},
])
def test_a_bad_name_is_422_naming_it(unix: httpx.Client, body: dict) -> None:
    field = "extra" if "extra" in body else "name"
    assert_problem(unix.post(SITES, json=body), 422, INVALID_FIELD, field)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=120), st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2)))
def test_any_name_is_taken_or_refused_naming_it(name: object) -> None:
    try:
        taken = site_name({"name": name})
    except Problem as problem:
        assert (problem.status, problem.field) == (422, "name")
        return
    assert taken == name and isinstance(taken, str) and 1 <= len(taken) <= 100
    assert taken == taken.strip() and taken.isprintable()


def test_a_scan_may_name_only_a_site_that_exists(unix: httpx.Client) -> None:
    missing = str(uuid.uuid4())
    problem = assert_problem(start(unix, {"target": "198.18.0.1", "site_id": missing}), 422, INVALID_FIELD, "site_id")
    assert missing in problem["detail"]
    site = new_site(unix)
    assert start(unix, {"target": "198.18.0.1", "site_id": site}).json()["site_id"] == site


def test_a_site_with_a_queued_scan_is_not_deleted(unix: httpx.Client) -> None:
    site = new_site(unix)
    scan = start(unix, {"target": "198.18.0.1", "site_id": site}).json()  # stays queued: nothing runs here
    problem = assert_problem(unix.delete(f"{SITES}/{site}"), 409, CONFLICT)
    assert scan["id"] in problem["detail"]
    unix.post(f"/api/v1/scans/{scan['id']}/stop")
    assert unix.delete(f"{SITES}/{site}").status_code == 204
    assert unix.get(f"/api/v1/scans/{scan['id']}").json()["site_id"] == site  # the scan keeps it


def test_reading_needs_read_and_changing_admin(api: Api) -> None:
    site = new_site(api.unix())
    reader, scanner, admin = (api.tcp(api.token(s)) for s in ("read", "scan", "admin"))
    assert reader.get(SITES).status_code == 200 and reader.get(f"{SITES}/{site}").status_code == 200
    for client in (reader, scanner):
        assert_problem(client.post(SITES, json={"name": "x"}), 403)
        assert_problem(client.patch(f"{SITES}/{site}", json={"name": "x"}), 403)
        assert_problem(client.delete(f"{SITES}/{site}"), 403)
    assert admin.post(SITES, json={"name": "x"}).status_code == 201
    assert_problem(api.tcp().get(SITES), 401)


def test_list_query_is_checked(unix: httpx.Client) -> None:
    assert_problem(unix.get(SITES, params={"per_page": 0}), 422, INVALID_FIELD, "per_page")
    assert_problem(unix.get(SITES, params={"name": "x"}), 422, INVALID_FIELD, "name")
    assert unix.get(SITES, params={"page": 9}).json()["sites"] == []
