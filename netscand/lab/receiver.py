"""A webhook receiver inside the lab: plain HTTP on a lab host's address, recording every request
(method, path, headers, body) as a JSON line, and answering 500 to the first N requests, then
200: a receiver that fails and then recovers, so a sender's retries can be seen and counted.

It listens in the host's namespace while the scanner's daemon calls it from its own, so the
delivery crosses the lab's links like any other traffic, and nothing outside the lab can reach it.
Usage: python -m netscand.lab.receiver STATEFILE HOST PORT FAILURES RECORD

Its server (Server) hands each request to a callable of the caller's, so the tests that need no
lab run the same one on 127.0.0.1 in a thread of their own, keeping the requests in memory.
"""

from __future__ import annotations

import argparse
import base64
import json
import socketserver
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from netscand.lab import namespaces, procs, truth
from netscand.lab.errors import LabError
from netscand.lab.lab import Lab
from netscand.lab.mutate import host, lab_netns

MODULE = "netscand.lab.receiver"
FAILED, OK = 500, 200


@dataclass(frozen=True)
class Received:
    status: int  # what the receiver answered
    method: str
    path: str
    headers: dict[str, str]  # by lower-cased name (a repeated header: its last value)
    body: bytes


@dataclass(frozen=True)
class Receiver:
    url: str
    pid: int
    record: Path

    def received(self) -> list[Received]:
        """Every request recorded so far, in the order they came (a last line still being
        written, without its newline yet, is not one)."""
        if not self.record.exists():
            return []
        text = self.record.read_text()
        return [_parse(line) for line in text[:text.rfind("\n") + 1].splitlines()]

    def stop(self) -> None:
        procs.stop([self.pid])


def _parse(line: str) -> Received:
    entry = json.loads(line)
    return Received(entry["status"], entry["method"], entry["path"], entry["headers"],
                    base64.b64decode(entry["body"]))


def start(lab: Lab, name: str, port: int, failures: int, record: Path) -> Receiver:
    """A receiver on lab host `name`'s address and `port`, answering 500 to the first `failures`
    requests; its requests go to `record` (replaced), its log beside it."""
    found = host(lab, name)
    if port in found["open"] or port in found["filtered"]:
        raise LabError(f"{name} already serves port {port}")
    lab_netns(lab, found)  # refused here rather than as a helper that did not start
    record.unlink(missing_ok=True)
    pid = procs.spawn(MODULE, lab.state_file, [name, str(port), str(failures), str(record)],
                      record.with_suffix(".log"))
    return Receiver(f"http://{found['ip']}:{port}", pid, record)


class Server(socketserver.ThreadingTCPServer):
    """Answers 500 to its first `failures` requests, then 200, handing each request with its
    answer to `keep` before answering. (Not an HTTPServer: its bind looks the address's name up.)"""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], failures: int, keep: Callable[[Received], None],
                 bind_and_activate: bool = True) -> None:
        super().__init__(address, _Handler, bind_and_activate=bind_and_activate)
        self.failures, self.keep = failures, keep
        self.count = 0
        self.lock = threading.Lock()

    def answer(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> int:
        """Keep a request and choose its status; one at a time, so the order and the count of
        failures are exact under concurrent deliveries."""
        with self.lock:
            status = FAILED if self.count < self.failures else OK
            self.count += 1
            self.keep(Received(status, method, path, {k.lower(): v for k, v in headers}, body))
            return status


class _Handler(BaseHTTPRequestHandler):
    server: Server

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.send_error(400, "bad Content-Length")
            return
        body = self.rfile.read(length)
        status = self.server.answer(self.command, self.path, list(self.headers.items()), body)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_GET = _serve

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # every request is kept already; errors are still logged


def _append_to(record: Path) -> Callable[[Received], None]:
    def append(r: Received) -> None:
        entry = {"status": r.status, "method": r.method, "path": r.path, "headers": r.headers,
                 "body": base64.b64encode(r.body).decode()}
        with open(record, "a") as out:
            out.write(json.dumps(entry) + "\n")
    return append


def _listen(lab: Lab, found: dict[str, Any], port: int, failures: int, record: Path) -> Server:
    # Made, bound and listening in the host's namespace; served from this one (a socket keeps
    # the namespace it was made in).
    with namespaces.inside(lab_netns(lab, found)):
        server = Server((found["ip"], port), failures, _append_to(record), bind_and_activate=False)
        server.server_bind()
        server.server_activate()
    return server


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("state_file", type=Path)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("failures", type=int)
    parser.add_argument("record", type=Path)
    args = parser.parse_args(argv)
    state = truth.read(args.state_file)
    found = next((h for h in state["hosts"] if h["name"] == args.host), None) if state else None
    if found is None:
        print(f"no host {args.host} in {args.state_file}", file=sys.stderr)
        return 1
    server = _listen(Lab(state, args.state_file.parent), found, args.port, args.failures, args.record)
    procs.signal_ready()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
