"""The live event streams, served for real (tests/api/conftest.py): scans stay queued there
(max_running=0), so the events here are scans' states; the lab test (test_events_lab.py) has a
running scan's. Every event read is checked against the document's event schemas."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import httpx_sse
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from netscand.api import events
from netscand.api.events import LAST_EVENT_ID, last_event_id
from netscand.api.models import MAX_SEQ
from netscand.api.problems import Problem
from netscand.store import StoreError
from tests.api.conftest import OPENAPI, Api, assert_problem, schema_validator, start

ITEM = OPENAPI["paths"]["/api/v1/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]["schema"]
EVENT = schema_validator(ITEM["properties"]["data"]["contentSchema"])
ITEM_SCHEMA = schema_validator(ITEM)


def sse_client(api: Api, token: str | None = None) -> httpx.Client:
    """A client of the streams (without the conformance hook, which reads a response whole)."""
    if token is None:
        return httpx.Client(base_url="http://netscand", transport=httpx.HTTPTransport(uds=str(api.socket_path)),
                            timeout=10)
    return httpx.Client(base_url=api.base_url, verify=api.tls, timeout=10,
                        headers={"Authorization": f"Bearer {token}"})


def checked(sse: httpx_sse.ServerSentEvent) -> dict[str, Any]:
    """The event's JSON, after checking it against the document."""
    ITEM_SCHEMA.validate({"id": sse.id, "event": sse.event, "data": sse.data})
    event = orjson.loads(sse.data)
    EVENT.validate(event)
    assert (sse.id, sse.event) == (str(event["seq"]), event["type"])
    return event


def stream(client: httpx.Client, path: str, count: int | None = None, connected: threading.Event | None = None,
           **headers: str) -> list[dict[str, Any]]:
    """The events of a stream: until it ends, or the first `count`; `connected` is set once it answered."""
    events: list[dict[str, Any]] = []
    with httpx_sse.connect_sse(client, "GET", path, headers=headers) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        if connected is not None:
            connected.set()
        for sse in source.iter_sse():
            events.append(checked(sse))
            if len(events) == count:
                break
    return events


def states(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["scan_id"], e["data"]["status"]) for e in events if e["type"] == "scan.state"]


class Reader:
    """A stream read in a thread, so the test can act while it is open."""

    def __init__(self, client: httpx.Client, path: str, count: int | None = None, **headers: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.failure: BaseException | None = None
        self.connected = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(client, path, count, headers), daemon=True)
        self.thread.start()

    def _read(self, client: httpx.Client, path: str, count: int | None, headers: dict[str, str]) -> None:
        try:
            self.events = stream(client, path, count, self.connected, **headers)
        except BaseException as exc:  # surfaced by join()
            self.failure = exc
            self.connected.set()

    def wait_connected(self) -> None:
        """Until the stream has answered: where it starts is decided."""
        assert self.connected.wait(10)

    def join(self, timeout: float = 10) -> list[dict[str, Any]]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the stream did not end"
        if self.failure is not None:
            raise self.failure
        return self.events


@pytest.fixture
def sse(api: Api) -> Iterator[httpx.Client]:
    with sse_client(api) as client:
        yield client


def test_a_scan_stream_goes_from_queued_to_cancelled_and_ends(api: Api, sse: httpx.Client) -> None:
    scan_id = start(api.unix()).json()["id"]
    reader = Reader(sse, f"/api/v1/scans/{scan_id}/events")
    reader.wait_connected()
    assert api.unix().post(f"/api/v1/scans/{scan_id}/stop").status_code == 200
    events = reader.join()
    assert states(events) == [(scan_id, "queued"), (scan_id, "cancelled")]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert all(e["site_id"] is None for e in events)
    # A finished scan's stream replays its events and ends.
    assert stream(sse, f"/api/v1/scans/{scan_id}/events") == events


def test_last_event_id_resumes_after_it_and_wins_over_after(api: Api, sse: httpx.Client) -> None:
    scan_id = start(api.unix()).json()["id"]
    api.unix().post(f"/api/v1/scans/{scan_id}/stop")
    path = f"/api/v1/scans/{scan_id}/events"
    queued, cancelled = stream(sse, path)
    assert stream(sse, path, **{LAST_EVENT_ID: str(queued["seq"])}) == [cancelled]
    assert stream(sse, f"{path}?after={queued['seq']}") == [cancelled]
    assert stream(sse, f"{path}?after=0", **{LAST_EVENT_ID: str(queued["seq"])}) == [cancelled]
    # It ended and the client has it all: 204, which tells an EventSource to stop reconnecting.
    for headers in ({}, {LAST_EVENT_ID: str(cancelled["seq"])}):
        done = sse.get(f"{path}?after={cancelled['seq']}" if not headers else path, headers=headers)
        assert (done.status_code, done.content) == (204, b"")


def test_the_stream_of_every_scan_starts_now_or_after_the_last_id(api: Api, sse: httpx.Client) -> None:
    first = start(api.unix()).json()["id"]
    api.on_loop(api.orchestrator.io.drain)  # its event written: before the stream's now
    reader = Reader(sse, "/api/v1/events", count=2)
    reader.wait_connected()
    second = start(api.unix()).json()["id"]
    api.unix().post(f"/api/v1/scans/{second}/stop")
    live = reader.join()
    assert states(live) == [(second, "queued"), (second, "cancelled")]  # not the first scan's, before it
    replayed = stream(sse, "/api/v1/events?after=0", count=3)
    assert states(replayed) == [(first, "queued"), (second, "queued"), (second, "cancelled")]
    assert stream(sse, "/api/v1/events", count=1, **{LAST_EVENT_ID: str(replayed[0]["seq"])}) == replayed[1:2]


def test_a_scan_token_sees_only_its_own_scans(api: Api) -> None:
    alice, bob = api.token("scan", "alice"), api.token("scan", "bob")
    reader = api.token("read", "dashboard")
    mine = start(api.tcp(alice)).json()["id"]
    theirs = start(api.tcp(bob)).json()["id"]
    api.tcp(alice).post(f"/api/v1/scans/{mine}/stop")
    with sse_client(api, alice) as client:
        assert states(stream(client, "/api/v1/events?after=0", count=2)) == [(mine, "queued"), (mine, "cancelled")]
        with httpx_sse.connect_sse(client, "GET", f"/api/v1/scans/{theirs}/events") as source:
            assert_problem(source.response.read() and source.response, 404)
    with sse_client(api, reader) as client:
        assert states(stream(client, "/api/v1/events?after=0", count=3)) == [
            (mine, "queued"), (theirs, "queued"), (mine, "cancelled")]
        assert states(stream(client, f"/api/v1/scans/{mine}/events")) == [(mine, "queued"), (mine, "cancelled")]


@pytest.mark.parametrize("value", ["", "abc", "-1", "+1", "1.5", "1,2", "0x10", str(MAX_SEQ + 1), "9" * 30])
def test_a_last_event_id_not_an_id_is_refused_naming_it(api: Api, value: str) -> None:
    unix = api.unix()
    for path in ("/api/v1/events", f"/api/v1/scans/{start(unix).json()['id']}/events"):
        assert_problem(unix.get(path, headers={LAST_EVENT_ID: value}), 422, field_=LAST_EVENT_ID)


@pytest.mark.parametrize("query", ["after=-1", "after=x", f"after={MAX_SEQ + 1}", "after=1&after=2", "since=3"])
def test_a_bad_query_is_refused_naming_it(api: Api, query: str) -> None:
    body = assert_problem(api.unix().get(f"/api/v1/events?{query}"), 422)
    assert body["field"] == query.split("=")[0]


def test_an_unknown_scan_has_no_stream(api: Api) -> None:
    assert_problem(api.unix().get("/api/v1/scans/00000000-0000-0000-0000-000000000000/events"), 404)
    assert_problem(api.tcp().get("/api/v1/events"), 401)


@given(st.text(max_size=30))
def test_last_event_id_reading_is_total(value: str) -> None:
    try:
        seq = last_event_id(value)
    except Problem as problem:
        assert (problem.status, problem.field) == (422, LAST_EVENT_ID)
    else:
        assert seq is not None and 0 <= seq <= MAX_SEQ and str(seq) == value.lstrip("0").rjust(1, "0")


def test_a_ping_is_a_comment_line_and_never_an_event(api: Api, sse: httpx.Client,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "PING_S", 0.1)
    scan_id = start(api.unix()).json()["id"]
    with sse.stream("GET", f"/api/v1/scans/{scan_id}/events") as response:
        lines = response.iter_lines()
        read = [next(lines) for _ in range(8)]  # its queued event (id, event, data, blank line), then pings
    assert read[:4] == [f"id: {read[0][4:]}", "event: scan.state", read[2], ""] and read[4:] == [": ping"] * 4
    # An SSE client library that dispatches on any blank line after an id sees no empty event.
    reader = Reader(sse, f"/api/v1/scans/{scan_id}/events")
    reader.wait_connected()
    time.sleep(0.5)  # pings go by
    api.unix().post(f"/api/v1/scans/{scan_id}/stop")
    assert states(reader.join()) == [(scan_id, "queued"), (scan_id, "cancelled")]


def waiting(api: Api) -> int:
    """How many streams wait for events now."""
    return api.on_loop(lambda: len(api.orchestrator.events._waiters))


def test_a_client_that_leaves_ends_its_stream(api: Api) -> None:
    scan_id = start(api.unix()).json()["id"]
    with sse_client(api) as client:
        stream(client, f"/api/v1/scans/{scan_id}/events", count=1)  # then it hangs up
    deadline = time.monotonic() + 5
    while waiting(api) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert waiting(api) == 0


def test_a_store_that_fails_mid_stream_ends_it_cleanly(api: Api, sse: httpx.Client,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    scan_id = start(api.unix()).json()["id"]
    events, read = api.orchestrator.events, api.orchestrator.events.read
    calls = 0

    async def failing_after_one(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise StoreError("cannot read events: database is locked", "database is locked")
        return await read(*args, **kwargs)

    monkeypatch.setattr(events, "read", failing_after_one)
    reader = Reader(sse, f"/api/v1/scans/{scan_id}/events")
    reader.wait_connected()
    api.unix().post(f"/api/v1/scans/{scan_id}/stop")  # a wake: the next read fails
    assert states(reader.join()) == [(scan_id, "queued")]  # ended, no error mid-stream; it may resume


def test_stopping_the_daemon_ends_open_streams_and_does_not_wait_on_them(api: Api, sse: httpx.Client) -> None:
    scan_id = start(api.unix()).json()["id"]
    api.on_loop(api.orchestrator.io.drain)
    every = Reader(sse, "/api/v1/events")
    with sse_client(api) as other:
        one = Reader(other, f"/api/v1/scans/{scan_id}/events")
        every.wait_connected()
        one.wait_connected()
        t0 = time.monotonic()
        # As the control process stops: the orchestrator (its queued scan kept queued, for the
        # next start), then the servers.
        api.on_loop(lambda: api.orchestrator.shutdown("the daemon was stopped"))
        api.servers.stop()
        assert time.monotonic() - t0 < 3
        assert states(one.join()) == [(scan_id, "queued")]
    assert states(every.join()) == []
