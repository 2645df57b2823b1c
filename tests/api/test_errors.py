"""Errors outside the scan rules: unknown routes, wrong methods, crashes. All problem+json."""

from __future__ import annotations

import sqlite3

import httpx
import structlog.testing

from tests.api.conftest import Api, assert_problem, start


def test_unknown_route_is_a_404_problem(unix: httpx.Client) -> None:
    for path in ("/", "/api/v1/nope", "/api/v1/scans/x/y/z", "/healthz/more"):
        body = assert_problem(unix.get(path), 404, "about:blank")
        assert body["title"] == "Not Found" and path in body["detail"]


def test_wrong_method_is_a_405_problem_with_allow(unix: httpx.Client) -> None:
    cases = [("PUT", "/api/v1/scans/abc", "DELETE, GET"), ("PUT", "/api/v1/scans/start", "POST"),
             ("GET", "/api/v1/scans/abc/stop", "POST"), ("POST", "/api/v1/scans", "GET"),
             ("POST", "/healthz", "GET"), ("PATCH", "/api/v1/openapi.json", "GET")]
    for method, path, allowed in cases:
        r = unix.request(method, path)
        body = assert_problem(r, 405, "about:blank")
        assert body["title"] == "Method Not Allowed"
        # Starlette keeps a route's methods in a set: their order varies.
        shown = set(r.headers["allow"].split(", "))
        assert set(allowed.split(", ")) <= shown and body["detail"].endswith(r.headers["allow"])


def test_get_of_start_is_an_unknown_scan(unix: httpx.Client) -> None:
    # GET /api/v1/scans/start is GET /api/v1/scans/{scan_id} for a scan called "start".
    assert_problem(unix.get("/api/v1/scans/start"), 404, "urn:netscand:problem:not-found")


def test_crash_is_a_bare_500_and_logged_once(api: Api) -> None:
    unix = api.unix()
    scan_id = start(unix).json()["id"]
    # A row the store cannot decode: reading it fails inside the route, and not as a database
    # error (those are 503s, a state of the daemon's, in test_store_errors.py).
    with sqlite3.connect(api.store.path) as db:
        db.execute("UPDATE scans SET options = 'not json' WHERE id = ?", [scan_id])
    with structlog.testing.capture_logs() as logs:
        r = unix.get(f"/api/v1/scans/{scan_id}")
        body = assert_problem(r, 500, "about:blank")
        assert body["title"] == "Internal Server Error"
        assert "Traceback" not in r.text and "sqlite" not in r.text.lower() and str(api.store.path) not in r.text
        assert unix.get("/healthz").status_code == 200  # the server carries on
    crashes = [e for e in logs if e["event"] == "api.request" and e["status"] == 500]
    assert len(crashes) == 1 and crashes[0]["log_level"] == "error" and crashes[0]["exc_info"]
