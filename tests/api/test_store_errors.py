"""A database that is locked, full or closed is the daemon's state, not the client's fault:
503 problem+json with Retry-After, never a 500 or a traceback; the log has the whole story."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import structlog.testing

from tests.api.conftest import Api, ApiRunner, assert_problem, fill, start

UNAVAILABLE = "urn:netscand:problem:unavailable"


def assert_unavailable(r: httpx.Response, reason: str, api: Api) -> None:
    body = assert_problem(r, 503, UNAVAILABLE)
    assert body["title"] == "Storage unavailable"
    assert f"({reason})" in body["detail"], body
    assert r.headers["retry-after"] == "5"
    # Neither the database's file nor SQLite's own words reach a client.
    assert str(api.store.path) not in r.text and "sqlite" not in r.text.lower()


def test_a_write_that_stays_locked_is_a_503(api: Api) -> None:
    # An administrator's sqlite3 shell in the middle of a write transaction.
    other = sqlite3.connect(api.store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with structlog.testing.capture_logs() as logs:
            r = start(api.unix())
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert_unavailable(r, "database is locked by another process", api)
    (event,) = [e for e in logs if e["event"] == "api.request" and e["path"] == "/api/v1/scans/start"]
    assert event["status"] == 503 and event["log_level"] == "warning"
    assert str(api.store.path) in event["error"]  # the operator's log names the file
    assert start(api.unix()).status_code == 202  # and once the lock is gone, all is well


def test_reads_of_a_closed_store_are_503s_on_both_listeners(api: Api) -> None:
    scan_id = start(api.unix()).json()["id"]
    token = api.token("read")
    api.store.close()
    for client in (api.unix(), api.tcp(token)):  # over TLS, checking the token already fails
        for path in (f"/api/v1/scans/{scan_id}", f"/api/v1/scans/{scan_id}/result", "/api/v1/scans",
                     "/metrics"):
            assert_unavailable(client.get(path), "the store is closed", api)


def test_a_full_disk_is_a_503(small_disk: Path, api_factory: ApiRunner) -> None:
    api = api_factory(directory=small_disk)
    scan_id = start(api.unix()).json()["id"]
    fill(small_disk)
    assert_unavailable(start(api.unix()), "disk is full", api)
    assert api.unix().get(f"/api/v1/scans/{scan_id}").status_code == 200  # reads still work
