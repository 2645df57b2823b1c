"""A real daemon for end-to-end tests: `netscand serve` in the lab's scanner namespace, with a
temporary state directory, a real Unix socket and a real TLS port.

The TLS port lives on the scanner namespace's loopback, which this (root-namespace) test process
can't reach, so a small forwarder relays TCP bytes to it: a thread that has entered the scanner
namespace (setns affects only the calling thread) connects there for each accepted connection.
TLS runs end to end through it.

Started by root, the daemon switches to its own user (netscand), which must reach its state
directory: pytest's own temporary directories are closed to other users, so these tests' tmp_path
and tmp_path_factory make theirs in /tmp instead (netscand.lab.harness, which benchmarks share).
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import netns

from netscand.lab import Lab
from netscand.lab.harness import DAEMON_PORT, Daemon, ReachableTemp, start_daemon, stop_daemon


class Forwarder:
    """Root-namespace 127.0.0.1:port -> (namespace, 127.0.0.1:target)."""

    def __init__(self, namespace: str, target: int) -> None:
        self.namespace, self.target = namespace, target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        netns.setns(self.namespace, flags=0)  # this thread only
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        self.listener.close()


@pytest.fixture(scope="session")
def tmp_path_factory() -> Iterator[ReachableTemp]:
    temp = ReachableTemp()
    try:
        yield temp
    finally:
        temp.remove()


@pytest.fixture
def tmp_path(request: pytest.FixtureRequest, tmp_path_factory: ReachableTemp) -> Path:
    # As pytest names them: short (a Unix socket's path has 108 bytes), no parameter punctuation.
    return tmp_path_factory.mktemp(re.sub(r"\W", "_", request.node.name)[:30])


@pytest.fixture
def daemon(lab: Lab, tmp_path: Path) -> Iterator[Daemon]:
    d = start_daemon(lab, tmp_path / "state")
    forwarder = Forwarder(lab.scanner_ns, DAEMON_PORT)
    d.url = f"https://127.0.0.1:{forwarder.port}"
    try:
        yield d
    finally:
        forwarder.close()
        stop_daemon(d)
        os.environ.pop("NETSCAND_TOKEN", None)
