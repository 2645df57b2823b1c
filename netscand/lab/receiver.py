"""A webhook receiver inside the lab: plain HTTP on a lab host's address, recording every request
(method, path, headers, body) as a JSON line, and answering 500 to the first N requests, then
200: a receiver that fails and then recovers, so a sender's retries can be seen and counted.

It listens in the host's namespace while the scanner's daemon calls it from its own, so the
delivery crosses the lab's links like any other traffic, and nothing outside the lab can reach it.
Usage: python -m netscand.lab.receiver STATEFILE HOST PORT FAILURES RECORD
"""

from __future__ import annotations

import argparse
import base64
import json
import socketserver
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from netscand.lab import namespaces, procs, truth
from netscand.lab.errors import LabError
from netscand.lab.lab import Lab
from netscand.lab.mutate import host

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
        """Every request so far, in the order they came."""
        if not self.record.exists():
            return []
        return [_parse(line) for line in self.record.read_text().splitlines()]

    def stop(self) -> None:
        procs.stop([self.pid])


def _parse(line: str) -> Received:
    entry = json.loads(line)
    return Received(entry["status"], entry["method"], entry["path"],
                    {k.lower(): v for k, v in entry["headers"]}, base64.b64decode(entry["body"]))


def start(lab: Lab, name: str, port: int, failures: int, record: Path) -> Receiver:
    """A receiver on lab host `name`'s address and `port`, answering 500 to the first `failures`
    requests; its requests go to `record` (replaced), its log beside it."""
    found = host(lab, name)
    if port in found["open"] or port in found["filtered"]:
        raise LabError(f"{name} already serves port {port}")
    record.unlink(missing_ok=True)
    pid = procs.spawn(MODULE, lab.state_file, [name, str(port), str(failures), str(record)],
                      record.with_suffix(".log"))
    return Receiver(f"http://{found['ip']}:{port}", pid, record)


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], failures: int, record: Path) -> None:
        super().__init__(address, _Handler, bind_and_activate=False)
        self.failures, self.record = failures, record
        self.count = 0
        self.lock = threading.Lock()

    def answer(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> int:
        """Record a request and choose its status; one at a time, so the order and the count
        of failures are exact under concurrent deliveries."""
        with self.lock:
            status = FAILED if self.count < self.failures else OK
            self.count += 1
            entry = {"status": status, "method": method, "path": path, "headers": headers,
                     "body": base64.b64encode(body).decode()}
            with open(self.record, "a") as out:
                out.write(json.dumps(entry) + "\n")
            return status


class _Handler(BaseHTTPRequestHandler):
    server: _Server

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


def _listen(found: dict[str, Any], port: int, failures: int, record: Path) -> _Server:
    # Made, bound and listening in the host's namespace; served from this one (a socket keeps
    # the namespace it was made in).
    with namespaces.inside(found["netns"]):
        server = _Server((found["ip"], port), failures, record)
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
    server = _listen(found, args.port, args.failures, args.record)
    procs.signal_ready()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
