"""Fuzzing the real daemon: schemathesis makes requests, valid and invalid, from the OpenAPI
document the daemon serves, and sends them over both listeners. No response may be a 5xx, and
every response must match the schema the document gives for its operation and status.

It needs the real daemon in the lab: fuzzed targets include hostnames, which the daemon
resolves, and only the lab's scanner namespace has a resolver (the lab's dnsmasq) that answers
them without asking anyone outside. Accepted starts become real scans, fenced by a policy that
allows only 198.18.0.0/15, at most 256 addresses and 2000 probes/s. Scans started beforehand
give the fuzzer real ids to mix into its paths, and lab targets to mix into its bodies, so
status, result and stop meet real scans rather than only 404s.

schemathesis runs its whole plan (coverage, fuzzing, stateful) in process, bounded by
EXAMPLES; `bench/fuzz.sh` is the long run. It speaks TCP only (requests), so the Unix socket
is reached through a relay that opens one socket connection per TCP connection.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import BaseSchema
from schemathesis.engine import events

from netscand.lab import Lab
from netscand.lab.harness import DAEMON_PORT, Daemon, start_daemon, stop_daemon
from tests.daemon.conftest import Forwarder
from tests.daemon.test_e2e import wait_for

pytestmark = pytest.mark.lab

EXAMPLES = 25  # per operation and phase, per listener: each run takes about half a minute
SEED = 20260315  # a failure in CI reproduces with the same seed
CHECKS = ("not_a_server_error", "response_schema_conformance")
POLICY = """[engine]
rate = 2000
[policy]
allowed_targets = ["198.18.0.0/15"]
max_target_addresses = 256
max_rate = 2000.0
"""


class UnixRelay:
    """127.0.0.1:port -> the Unix socket, one connection for each accepted one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.socket(socket.AF_UNIX)
            try:
                upstream.connect(str(self.path))
            except OSError:
                client.close()
                upstream.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=Forwarder._pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.listener.close()


@dataclass
class Fuzzed:
    """What the daemon is fuzzed on: its listeners, a token, and values worth mixing in."""

    daemon: Daemon
    unix_url: str
    tls_url: str
    token: str
    scan_ids: list[str]
    targets: list[str | list[str]]
    document: dict[str, Any]


@pytest.fixture(scope="module")
def fuzzed(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    home = tmp_path_factory.mktemp("fuzz")
    (home / "netscand.toml").write_text(POLICY)
    daemon = start_daemon(lab, home / "state", "--config", str(home / "netscand.toml"))
    relay = UnixRelay(daemon.socket)
    forwarder = Forwarder(lab.scanner_ns, DAEMON_PORT)
    try:
        hosts = [h["ip"] for h in lab.truth["hosts"]]
        routed = next(h["ip"] for h in lab.truth["hosts"] if h["routed"])
        targets: list[str | list[str]] = [hosts[0], f"{routed}/30", hosts[1:3]]
        with daemon.unix() as c:
            done = c.post("/api/v1/scans/start", json={"target": hosts[0], "profile": "custom", "ports": [22]})
            # Still running while the fuzzer asks about it: every port of one host, slowly.
            slow = c.post("/api/v1/scans/start", json={"target": hosts[1], "profile": "custom",
                                                        "ports": ["1-65535"], "rate": 500})
            stopped = c.post("/api/v1/scans/start", json={"target": hosts[2], "profile": "quick"})
            ids = [r.json()["id"] for r in (done, slow, stopped)]
            assert c.post(f"/api/v1/scans/{ids[2]}/stop").status_code == 200
            assert wait_for(c, ids[0])["status"] == "completed"
            document = c.get("/api/v1/openapi.json").raise_for_status().json()
        yield Fuzzed(daemon, relay.url, f"https://127.0.0.1:{forwarder.port}",
                     daemon.token("fuzzer", "admin"), ids, targets, document)
    finally:
        relay.close()
        forwarder.close()
        stop_daemon(daemon)


@dataclass
class Outcome:
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)  # (operation, status) -> count
    failures: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


def without_streams(document: dict[str, Any]) -> dict[str, Any]:
    """The document without its event streams: a live stream has no end for schemathesis to wait
    for (its pings outrun the request timeout), so it would hold the run for ever. Their requests
    are checked by their own tests (tests/api/test_events.py: any Last-Event-ID, a property test)
    and by bench/fuzz.sh, whose schemathesis reads a stream event by event."""
    def streams(operation: dict[str, Any]) -> bool:
        return any("text/event-stream" in r.get("content", {}) for r in operation.get("responses", {}).values())

    paths = {path: ops for path, ops in document["paths"].items()
             if not any(streams(op) for op in ops.values() if isinstance(op, dict))}
    return document | {"paths": paths}


def fuzz(f: Fuzzed, config: dict[str, Any]) -> Outcome:
    """Run schemathesis's plan against one listener."""
    schema = schemathesis.openapi.from_dict(without_streams(f.document), config=schemathesis.Config.from_dict({
        "seed": SEED, "request-timeout": 20, "workers": 1, "cache": {"enabled": False},
        "generation": {"max-examples": EXAMPLES, "database": "none"},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        **config,
    }))
    _mix_in(schema, f.scan_ids, f.targets)
    outcome, failed, reproduce = Outcome(), Counter[str](), {}
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for case_id, interaction in event.recorder.interactions.items():
                label = event.recorder.cases[case_id].value.operation.label
                outcome.statuses[label, interaction.response.status_code if interaction.response else 0] += 1
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.failure_info is not None:
                        case = event.recorder.cases[case_id].value
                        key = f"{check.name}: {case.operation.label}: {check.failure_info.failure.title}"
                        failed[key] += 1
                        reproduce.setdefault(key, check.failure_info.code_sample)
        elif isinstance(event, events.NonFatalError):
            outcome.failures.append(f"{event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            outcome.failures.append(f"fatal: {event.exception!r}")
    outcome.failures += [f"{n} x {key}\n    {reproduce[key]}" for key, n in failed.items()]
    return outcome


def _mix_in(schema: BaseSchema, scan_ids: list[str], targets: list[str | list[str]]) -> None:
    @schema.hook
    def flatmap_path_parameters(context: Any, parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
        if not parameters or "scan_id" not in parameters:
            return st.just(parameters)
        return st.sampled_from([parameters, *({**parameters, "scan_id": i} for i in scan_ids)])

    @schema.hook
    def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
        if not isinstance(body, dict) or "target" not in body:
            return st.just(body)
        return st.sampled_from([body, *({**body, "target": t} for t in targets)])


def assert_fuzzed_cleanly(f: Fuzzed, outcome: Outcome) -> None:
    assert not outcome.failures, "\n".join(outcome.failures)
    operations = {f"{m.upper()} {p}" for p, ops in without_streams(f.document)["paths"].items() for m in ops}
    reached = {label for label, _ in outcome.statuses}
    assert reached == operations
    # The mixed-in values took it past validation: scans were started, real ones read and stopped.
    for label, status in (("POST /api/v1/scans/start", 202), ("GET /api/v1/scans/{scan_id}", 200),
                          ("GET /api/v1/scans/{scan_id}/result", 200), ("POST /api/v1/scans/{scan_id}/stop", 409)):
        assert outcome.statuses[label, status] > 0, (label, status, outcome.statuses)
    with f.daemon.unix() as c:
        assert c.get("/healthz").status_code == 200
    crashes = [e for e in map(_event, f.daemon.log.read_text().splitlines())
               if e.get("event") == "api.request" and (e.get("status") or 500) >= 500]
    assert not crashes, crashes[:5]


def _event(line: str) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


def test_fuzzed_requests_over_the_unix_socket(fuzzed: Fuzzed) -> None:
    assert_fuzzed_cleanly(fuzzed, fuzz(fuzzed, {"base-url": fuzzed.unix_url}))


def test_fuzzed_requests_over_tls_with_a_token(fuzzed: Fuzzed) -> None:
    outcome = fuzz(fuzzed, {"base-url": fuzzed.tls_url, "tls-verify": str(fuzzed.daemon.cert),
                            "headers": {"Authorization": f"Bearer {fuzzed.token}"}})
    assert_fuzzed_cleanly(fuzzed, outcome)
