"""A real webhook receiver for the tests: an HTTP server on 127.0.0.1 in a thread that records
every request and answers 500 to the first `failures` of them, then 200 (a receiver that fails,
then recovers)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    status: int  # what the receiver answered
    path: str
    headers: dict[str, str]  # by lower-cased name
    body: bytes


class Receiver:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    status = 500 if len(receiver.received) < receiver.failures else 200
                    receiver.received.append(Received(status, self.path, {k.lower(): v for k, v in self.headers.items()},
                                                      body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.status == 200]

    def wait_for(self, done: Callable[[Receiver], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not done(self):
            assert time.monotonic() < deadline, f"receiver got {len(self.received)} requests"
            time.sleep(0.02)


@contextmanager
def receiving(failures: int = 0) -> Iterator[Receiver]:
    receiver = Receiver(failures)
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
