"""The lab's one services process: every host's open ports, served from a single loop.

A socket keeps the namespace it was created in, so the process visits each host's namespace
only to create its listeners, then serves them all from the namespace it started in.
Usage: python -m netscand.lab.services STATEFILE
"""

from __future__ import annotations

import selectors
import socket
import sys
from typing import Any

from netscand.lab import namespaces, procs

BACKLOG = 4096  # benchmarks open connections far faster than one loop accepts them


def listen_all(state: dict[str, Any]) -> list[tuple[socket.socket, bytes]]:
    listeners = []
    for host in state["hosts"]:
        if host["kind"] != "imitation":
            continue  # a server's ports belong to real daemons (daemons.py), a hostile host's to hostile_services.py
        with namespaces.inside(host["netns"]):
            for port in host["open"]:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host["ip"], port))
                sock.listen(BACKLOG)
                sock.setblocking(False)
                listeners.append((sock, host["banners"].get(str(port), "").encode()))
    return listeners


def serve(listeners: list[tuple[socket.socket, bytes]]) -> None:
    selector = selectors.DefaultSelector()
    for sock, banner in listeners:
        selector.register(sock, selectors.EVENT_READ, (sock, banner))
    while True:
        for key, _ in selector.select():
            sock, banner = key.data
            while True:
                try:
                    conn, _ = sock.accept()
                except (BlockingIOError, ConnectionAbortedError):
                    break
                try:
                    if banner:
                        conn.setblocking(False)  # a banner fits the send buffer; never wait on a client
                        conn.send(banner)
                except OSError:
                    pass  # the client left first: nothing to serve
                finally:
                    conn.close()


if __name__ == "__main__":
    raise SystemExit(procs.serve_lab(sys.argv[1:], listen_all, serve))
