"""A real webhook receiver for the tests that need no lab: the lab's receiver server
(netscand.lab.receiver.Server: 500 to the first `failures` requests, then 200) on 127.0.0.1 in a
thread of the test, its requests kept in memory; over HTTPS when given a server TLS context."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from netscand.lab.receiver import Received, Server

__all__ = ["Received", "Receiver", "receiving"]


class Receiver:
    def __init__(self, failures: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.received: list[Received] = []  # appended to under the server's lock
        self.server = Server(("127.0.0.1", 0), failures, self.received.append)
        if tls is not None:  # a handshake the client refuses fails the accept, which the server drops
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = f"http{'s' if tls else ''}://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def accepted(self) -> list[Received]:
        with self.server.lock:
            return [r for r in self.received if r.status == 200]

    def wait_for(self, done: Callable[[Receiver], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not done(self):
            assert time.monotonic() < deadline, f"receiver got {len(self.received)} requests"
            time.sleep(0.02)


@contextmanager
def receiving(failures: int = 0, tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    receiver = Receiver(failures, tls)
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
