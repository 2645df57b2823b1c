"""One structured log event per request, its count in the metrics, and the last line of
defence against a crash.

It sits inside Starlette's ServerErrorMiddleware, so an unexpected exception from a route ends
here: it is logged once, with its traceback, in the request's own event, and the client gets a
bare 500 problem (never a traceback). Starlette's own handler would re-raise it to uvicorn,
which would log it a second time.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from netscand.api.listener import PEER_KEY, listener_of
from netscand.api.metrics import Metrics
from netscand.api.problems import Problem

log = structlog.get_logger()

NOTE_KEY = "netscand.log"  # per-request facts later layers add to the event (owner, error)


def note(scope: Scope, **facts: Any) -> None:
    """Adds facts to this request's log event; a no-op outside AccessLog."""
    holder = scope.get(NOTE_KEY)
    if holder is not None:
        holder.update(facts)


class AccessLog:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        facts: dict[str, Any] = {"owner": None}
        scope[NOTE_KEY] = facts
        status: int | None = None

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        crash: BaseException | None = None
        try:
            await self.app(scope, receive, send_noting_status)
        except Exception as exc:  # anything a route did not turn into a problem itself
            crash = exc
            if status is None:
                await Problem.plain(500, "internal error; the daemon's log has the details") \
                    .response()(scope, receive, send_noting_status)
        kind = listener_of(scope)
        event = {
            **facts, "method": scope["method"], "path": scope["path"], "status": status,
            "duration_ms": round((time.perf_counter() - began) * 1000, 2), "listener": kind,
        }
        if scope.get(PEER_KEY) is not None:
            event["peer"] = scope[PEER_KEY]
        if status is not None:
            self.metrics.request(kind, status)
        if crash is not None:
            log.error("api.request", **event, exc_info=crash)
        elif status is not None and status >= 500:
            log.warning("api.request", **event)  # the daemon could not serve it: worth a look
        else:
            log.info("api.request", **event)
