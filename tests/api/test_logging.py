"""One structured event per request, with who and how, and never the token."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import subprocess
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
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


# The format on stdout, from a process of its own: it is decided by what stdout is.

LOGGING = """
import structlog
from netscand import logs
logs.configure({fmt!r})
log = structlog.get_logger()
log.debug("d")
log.info("i", n=1)
log.warning("w")
log.error("e")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("x")
"""


def _log_lines(fmt: str, stdout: int, journal_stream: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    if journal_stream is not None:
        env["JOURNAL_STREAM"] = journal_stream
    subprocess.run([sys.executable, "-c", LOGGING.format(fmt=fmt)], stdout=stdout, env=env,
                   check=True, timeout=30)


def _device_inode(path: Path) -> str:
    st = path.stat()
    return f"{st.st_dev}:{st.st_ino}"


@pytest.mark.parametrize("fmt", ["json", "auto"])
def test_lines_to_the_journal_carry_their_syslog_priority(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "stdout"
    with open(out, "wb") as f:
        _log_lines(fmt, f.fileno(), _device_inode(out))  # as systemd sets it: stdout is the journal
    lines = out.read_text().splitlines()
    prefixes = [line[:line.index(">") + 1] for line in lines]
    assert prefixes == ["<7>", "<6>", "<4>", "<3>", "<3>"]  # SD_DEBUG, SD_INFO, SD_WARNING, SD_ERR
    events = [json.loads(line[3:]) for line in lines]  # one JSON object per line after it
    assert [e["event"] for e in events] == ["d", "i", "w", "e", "x"]
    assert events[1]["n"] == 1 and "ZeroDivisionError" in events[4]["exception"]


def test_json_elsewhere_is_plain_json_lines(tmp_path: Path) -> None:
    out, other = tmp_path / "stdout", tmp_path / "elsewhere"
    other.touch()
    for journal_stream in (None, _device_inode(other)):  # unset, or inherited from a parent
        with open(out, "wb") as f:
            _log_lines("json", f.fileno(), journal_stream)
        events = [json.loads(line) for line in out.read_text().splitlines()]
        assert [e["level"] for e in events] == ["debug", "info", "warning", "error", "error"]


def test_a_terminal_gets_readable_lines() -> None:
    leader, follower = pty.openpty()
    try:
        _log_lines("auto", follower, None)
        os.close(follower)
        text = b""
        with contextlib.suppress(OSError):  # EIO once the writer has gone
            while chunk := os.read(leader, 65536):
                text += chunk
    finally:
        os.close(leader)
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in text.decode().splitlines()]  # no colours
    assert lines and not any(line.startswith(("{", "<")) for line in lines)
    assert any(re.search(r"\[warning\s*\] w\b", line) for line in lines), lines
