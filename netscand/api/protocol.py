"""uvicorn's httptools protocol with bounds on request heads, in bytes and in time.

uvicorn has settings for neither with httptools (h11_max_incomplete_event_size is h11's only):
its URL and headers grow as long as a client sends them, and a connection that sends nothing,
or half a head, is kept for ever. Before authentication, anyone who can reach the TLS port
could hold memory and file descriptors that way. So, as nginx and Node do:

- a URL over MAX_URL bytes gets 414, a request line and headers over MAX_HEAD bytes get 431;
- a head that is not complete HEAD_TIMEOUT_S after its first byte gets 408, and a connection
  that sends no byte at all for that long is closed;

each answered with a problem+json body and the connection closed. Bodies are bounded by the
app (api/body.py); once a head is complete uvicorn's own keep-alive timeout takes over.
"""

from __future__ import annotations

import asyncio
from enum import Enum
from http import HTTPStatus

import orjson
import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from netscand.api.problems import Problem
from netscand.api.responses import PROBLEM_JSON

log = structlog.get_logger()

MAX_URL = 8 << 10
MAX_HEAD = 32 << 10  # a token and the usual headers take well under 1 KiB
HEAD_TIMEOUT_S = 10.0
# A head is fed to the parser this much at a time and counted between pieces, so the count is
# off by at most one piece however much one read brings.
PIECE = 4 << 10


class _Reading(Enum):
    IDLE = 0  # before a request's first byte
    HEAD = 1  # its request line and headers
    REST = 2  # its body, and the app's answer


class BoundedHttpTools(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._reading = _Reading.IDLE
        self._head_bytes = self._url_bytes = 0
        # Set by a parser callback; answered once the parser has returned (from inside it,
        # uvicorn would answer a 400 as well).
        self._refusal: tuple[int, str] | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        at = 0
        while at < len(data) and self._reading is not _Reading.REST:
            piece = data[at:at + PIECE]
            at += len(piece)
            super().data_received(piece)
            if self.transport.is_closing():
                return  # uvicorn refused the request itself (a 400)
            if self._reading is not _Reading.REST:
                self._head_bytes += len(piece)
                if self._head_bytes > MAX_HEAD:
                    self._refusal = self._refusal or (
                        431, f"the request's line and headers are longer than {MAX_HEAD} bytes")
            if self._refusal:
                self._refuse(*self._refusal)
                return
        if at < len(data):
            super().data_received(data[at:])

    # Parser callbacks; after a refusal, nothing more of the request reaches uvicorn.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading = _Reading.HEAD
        self._head_bytes = self._url_bytes = 0
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)  # the parser hands the URL over as it arrives
        if self._url_bytes > MAX_URL:
            self._refusal = (414, f"the request's URL is longer than {MAX_URL} bytes")
        elif not self._refusal:
            super().on_url(url)

    def on_headers_complete(self) -> None:
        self._reading = _Reading.REST
        self._disarm_head_timer()
        if not self._refusal:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refusal:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refusal:
            super().on_message_complete()
        self._reading = _Reading.IDLE  # uvicorn's keep-alive timeout watches the wait for the next

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT_S, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._reading is _Reading.HEAD:
            self._refuse(408, f"the request's head was not complete within {HEAD_TIMEOUT_S:.0f} s")
        elif self._reading is _Reading.IDLE:
            self.transport.close()  # no request to answer

    def _refuse(self, status: int, detail: str) -> None:
        body = orjson.dumps(Problem.plain(status, detail).body())
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head.append(f"content-type: {PROBLEM_JSON}\r\ncontent-length: {len(body)}\r\n"
                    "connection: close\r\n\r\n".encode())
        self.transport.write(b"".join(head) + body)
        self.transport.close()
        # Never reaches the app, so the access log would not see it.
        log.warning("api.refused", status=status, detail=detail,
                    client=f"{self.client[0]}:{self.client[1]}" if self.client else None)
