"""One structured event per request, with who and how, and never the token."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

import structlog.testing

from starlette.types import ASGIApp, Receive, Scope, Send

from netscand.api import listener
from netscand.api.listener import PEER_KEY
from tests.api.conftest import Api, ApiRunner, start


def _wait_for(logs: list[MutableMapping[str, Any]], count: int) -> list[MutableMapping[str, Any]]:
    # The server logs after the last byte went out: the client may read it a moment earlier.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        events = [e for e in logs if e["event"] == "api.request"]
        if len(events) >= count:
            return events
        time.sleep(0.01)
    raise AssertionError(f"expected {count} api.request events, got {logs}")


def test_one_event_per_request(api: Api) -> None:
    token = api.token("read", "dashboard")
    with structlog.testing.capture_logs() as logs:
        scan_id = start(api.unix()).json()["id"]
        api.tcp(token).get(f"/api/v1/scans/{scan_id}?")
        api.tcp(token).post("/api/v1/scans/start", json={"target": "198.18.0.1"})
        api.tcp("nsd_wrong").get("/api/v1/scans")
        api.unix().get("/nowhere")
        events = _wait_for(logs, 5)
    assert len(events) == 5
    keys = {"method", "path", "status", "duration_ms", "listener", "owner"}
    for e in events:
        assert keys <= e.keys() and e["log_level"] == "info"
        assert isinstance(e["duration_ms"], float) and e["duration_ms"] >= 0
    by_path = {(e["method"], e["path"], e["status"]): (e["listener"], e["owner"]) for e in events}
    assert by_path == {
        ("POST", "/api/v1/scans/start", 202): ("unix", "unix"),
        ("GET", f"/api/v1/scans/{scan_id}", 200): ("tcp", "dashboard"),
        ("POST", "/api/v1/scans/start", 403): ("tcp", "dashboard"),
        ("GET", "/api/v1/scans", 401): ("tcp", None),
        ("GET", "/nowhere", 404): ("unix", None),
    }
    assert token not in repr(logs) and "nsd_wrong" not in repr(logs)


def test_peer_credentials_are_logged_when_the_daemon_supplies_them(api_factory: ApiRunner) -> None:
    def with_peer(app: ASGIApp, kind: str) -> ASGIApp:
        tagged = listener(app, kind)  # type: ignore[arg-type]

        async def peer(scope: Scope, receive: Receive, send: Send) -> None:
            await tagged({**scope, PEER_KEY: {"uid": 1000, "pid": 4242}}, receive, send)

        return peer

    api = api_factory(wrap=with_peer)
    plain = api_factory()
    with structlog.testing.capture_logs() as logs:
        api.unix().get("/healthz")
        (event,) = _wait_for(logs, 1)
        plain.unix().get("/healthz")
        _, bare = _wait_for(logs, 2)
    assert event["peer"] == {"uid": 1000, "pid": 4242}
    assert "peer" not in bare  # uvicorn alone does not know the peer
