"""The live event streams: Server-Sent Events of one scan, and of every scan a client may see.

Each stream reads the store by seq, a batch at a time on the reader threads, and waits for the
next wake of the orchestrator's Events when it has caught up: a client holds one batch at most,
however far behind it is, and resuming (`Last-Event-ID`) is the same read from another seq.
A scan's stream ends once the scan's last `scan.state` has been sent (a finished scan with
nothing after the client's last event answers 204, which tells an EventSource to stop
reconnecting); every stream ends when the client leaves, and when the daemon stops: at the end
of the batch it is sending (the client resumes from its last id), and a send the client does not
take is cancelled after STOP_GRACE_S (end_streams), so the daemon's stop is never held by one.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
import structlog
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import AppStatus, SendTimeoutError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from netscand.api.access import note
from netscand.api.auth import Principal
from netscand.api.models import MAX_SEQ, EventsQuery
from netscand.api.problems import Problem
from netscand.api.validate import query_as
from netscand.scan.errors import ScanError
from netscand.scan.orchestrator import Orchestrator
from netscand.statuses import FINISHED
from netscand.store import StoreError

log = structlog.get_logger()

EVENTS = "/api/v1/events"
LAST_EVENT_ID = "Last-Event-ID"
BATCH = 200  # events read, and held, per client at a time
WAIT_S = 15.0  # longest wait for a wake; then a scan's stream checks whether its scan ended without a last event
PING_S = 15.0  # a comment line this often keeps proxies (and clients' read timeouts) from closing a quiet stream
SEND_TIMEOUT_S = 30.0  # a client that takes nothing for this long is dropped
STOP_GRACE_S = 1.0  # at a stop, how long a stream may take to send its batch before it is cut
_SEQ = re.compile(r"[0-9]{1,19}")


def last_event_id(value: str | None) -> int | None:
    """The Last-Event-ID header: the seq of the last event the client has, if it sent one."""
    if value is None:
        return None
    if not _SEQ.fullmatch(value) or int(value) > MAX_SEQ:
        raise Problem.invalid(LAST_EVENT_ID, f"{LAST_EVENT_ID} must be an event's id, a non-negative "
                                             f"integer of at most {MAX_SEQ}; not {value[:40]!r}")
    return int(value)


def start_of(request: Request) -> int | None:
    """Where the client resumes: Last-Event-ID (what a reconnecting EventSource sends), else
    ?after=; None if neither."""
    query = query_as(request.query_params, EventsQuery)
    header = last_event_id(request.headers.get(LAST_EVENT_ID))
    if header is not None:
        return header
    return query.after if isinstance(query.after, int) else None


def sse(event: dict[str, Any]) -> ServerSentEvent:
    body = {k: event[k] for k in ("seq", "type", "scan_id", "site_id", "at", "data")}
    return ServerSentEvent(data=orjson.dumps(body).decode(), event=event["type"], id=str(event["seq"]))


def final(event: dict[str, Any]) -> bool:
    return event["type"] == "scan.state" and event["data"].get("status") in FINISHED


class Ping(ServerSentEvent):
    """A keep-alive comment line, without the blank line that ends an event: a client library
    that dispatches on every blank line once it has had an id (httpx-sse does, as the spec's
    "last event ID" outlives each event) would take a ping for an empty event."""

    def encode(self) -> bytes:
        return b": ping\n"


class EventStream(EventSourceResponse):
    """An SSE response whose client stopped reading ends quietly: it may resume from its last id."""

    def __init__(self, events: AsyncIterator[ServerSentEvent]) -> None:
        super().__init__(events, ping=PING_S, ping_message_factory=Ping, send_timeout=SEND_TIMEOUT_S,
                         sep="\n", shutdown_grace_period=STOP_GRACE_S)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            note(scope, error="the client took nothing for too long: stream dropped")


def end_streams() -> None:
    """The daemon is stopping (its events closed): every stream still sending STOP_GRACE_S from
    now, or blocked on a client that reads nothing, is cancelled. sse-starlette learns of a stop
    only from uvicorn's signal handlers, which the control process does not install."""
    AppStatus.should_exit = True


class EventEndpoints:
    def __init__(self, orchestrator: Orchestrator) -> None:
        self.orchestrator = orchestrator
        self.events = orchestrator.events

    async def scan(self, request: Request, who: Principal) -> Response:
        """A scan's events, from its first (or after the client's last), until its last state;
        204 if the scan has ended and the client has them all."""
        scan_id = request.path_params["scan_id"]
        after = start_of(request) or 0
        status = (await self.orchestrator.status(scan_id, who.viewer))["status"]  # 404 unless visible
        if status in FINISHED and await self._told(scan_id, after):
            return Response(status_code=204)
        return EventStream(self._scan(scan_id, after))

    async def all(self, request: Request, who: Principal) -> EventStream:
        """Every event the caller may see (a `scan` token: its own scans'), from now on (or after
        the client's last)."""
        after = start_of(request)
        if after is None:
            after = await self.events.last()
        return EventStream(self._all(after, who.viewer))

    async def _all(self, cursor: int, owner: str | None) -> AsyncIterator[ServerSentEvent]:
        while True:
            # Closed before the read: it finds every event written before the stop, and is the last.
            closing, seen = self.events.closed, self.events.written
            if (batch := await self._read(cursor, owner=owner)) is None:
                return
            for event in batch:
                yield sse(event)
            if closing:
                return
            cursor = batch[-1]["seq"] if batch else cursor
            if len(batch) < BATCH:
                await self.events.wait(WAIT_S, seen)

    async def _scan(self, scan_id: str, cursor: int) -> AsyncIterator[ServerSentEvent]:
        # A scan that ended without a last event (interrupted by a restart, deleted, or one the
        # store refused) is caught by asking when the stream first catches up and after each
        # quiet WAIT_S: then one more read, and the stream ends.
        check, ended = True, False
        while True:
            closing, seen = self.events.closed, self.events.written  # as in _all
            if (batch := await self._read(cursor, scan_id=scan_id)) is None:
                return
            for event in batch:
                yield sse(event)
                if final(event):
                    return
            if closing:
                return
            cursor = batch[-1]["seq"] if batch else cursor
            if len(batch) == BATCH:
                continue
            if ended:
                return
            if check and await self._ended(scan_id):
                ended = True
                continue
            check = not await self.events.wait(WAIT_S, seen)

    async def _read(self, cursor: int, limit: int = BATCH, **which: str | None) -> list[dict[str, Any]] | None:
        """The next batch; None if the store can't be read now (locked, broken): the stream
        ends rather than the request failing mid-stream, and its client resumes from its last id."""
        try:
            return await self.events.read(cursor, limit, **which)
        except StoreError as exc:
            log.warning("events.read_failed", error=str(exc))
            return None

    async def _told(self, scan_id: str, cursor: int) -> bool:
        """Whether nothing of a finished scan follows the cursor, once its queued writes are done
        (its last event may be among them). False if the store can't say: the stream answers."""
        await self.orchestrator.io.drain()
        return await self._read(cursor, 1, scan_id=scan_id) == []

    async def _ended(self, scan_id: str) -> bool:
        """Whether the scan has ended (or gone); if so every write queued until now is done, so
        one more read finds its last events if it had any."""
        try:
            status = (await self.orchestrator.status(scan_id, None))["status"]
        except ScanError:
            return True  # deleted
        except StoreError:
            return False  # asked again after the next quiet WAIT_S
        if status in FINISHED:
            await self.orchestrator.io.drain()
            return True
        return False
