"""The API under test, served for real: a Store on a SQLite file, an Orchestrator over a real
Dispatcher, and the app behind two uvicorn servers on one event loop in a background thread,
as the control process serves it: a Unix socket (trusted) and TLS on 127.0.0.1 (tokens).

Limits(max_running=0) keeps every scan queued: no scan reaches the engine and no packet is
sent. Targets are from 198.18.0.0/15 (benchmarking, RFC 2544) anyway. No engine worker exists
here; an idle one beats in the worker table instead, so the API is ready as a daemon's would be.

Every response any test receives is checked against the OpenAPI document the app serves (an
httpx response hook): its status must be documented for the operation, its media type too,
and its body must match the documented schema. The schemas are closed (api/models.py), so a
field missing from the body, or one the models do not declare, fails the test that sees it.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from netscand import compose
from netscand.api import create_app, listener
from netscand.api.openapi import document
from netscand.api.protocol import BoundedHttpTools
from netscand.engine.shm import Shared, WorkerRow
from netscand.scan.dispatch import Dispatcher
from netscand.config import PolicyConfig
from netscand.scan.limits import Limits
from netscand.scan.orchestrator import Orchestrator
from netscand.scan.policy import Policy
from netscand import tls
from netscand.store import Store

Wrapper = Callable[[Any, Any], Any]  # (app, listener kind) -> app as served on that listener
MAX_TARGET_ADDRESSES = 1 << 16  # small, so 198.18.0.0/15 is "too large"
STATUS_KEYS = {"id", "status", "target", "profile", "site_id", "progress_percent", "hosts_found",
               "ports_found", "created_at", "started_at", "estimated_completion", "finished_at", "error",
               "excluded_addresses"}
RESULT_KEYS = {"id", "status", "target", "profile", "site_id", "started_at", "finished_at",
               "devices_found", "open_ports_total", "duration_seconds", "page", "per_page", "devices"}
PROBLEM_KEYS = {"type", "title", "status", "detail"}
ENGINE_WORKERS = 2
SMALL_DISK = 4 << 20  # room for an empty store, its write-ahead log and a few scans
OPENAPI = document()


# -- OpenAPI conformance ------------------------------------------------------------------------

def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template)) + "$")


# Literal paths first, so /api/v1/scans/start is never taken for /api/v1/scans/{scan_id}.
_TEMPLATES = sorted(OPENAPI["paths"], key=lambda t: ("{" in t, t))
_MATCHERS = [(t, _template_regex(t)) for t in _TEMPLATES]


def schema_validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator for a schema of the document, its $refs resolved within the document."""
    return jsonschema.Draft202012Validator({**schema, "components": OPENAPI["components"]},
                                           format_checker=jsonschema.FormatChecker())


def _resolve(obj: dict[str, Any]) -> dict[str, Any]:
    ref = obj.get("$ref")
    if ref is None:
        return obj
    node: Any = OPENAPI
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def operation_for(method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    """The documented operation a request reached: (template, operation), or None."""
    for template, regex in _MATCHERS:
        if regex.match(path):
            op = OPENAPI["paths"][template].get(method.lower())
            return (template, op) if op is not None else None
    return None


def conform(response: httpx.Response) -> None:
    """Assert that the response is one the document promises for its request."""
    response.read()
    media = response.headers.get("content-type", "").split(";")[0]
    found = operation_for(response.request.method, response.request.url.path)
    if found is None:
        # No such operation (unknown route, 405): still a problem document.
        assert media == "application/problem+json", (response.status_code, media)
        schema_validator({"$ref": "#/components/schemas/Problem"}).validate(response.json())
        return
    template, op = found
    where = f"{response.request.method} {template} -> {response.status_code}"
    documented = op["responses"].get(str(response.status_code))
    assert documented is not None, f"{where} is not documented"
    spec = _resolve(documented)
    if "content" not in spec:
        assert not response.content, f"{where}: a body where none is documented"
        return
    assert media in spec["content"], f"{where}: {media} is not documented"
    for name, header in spec.get("headers", {}).items():
        if header.get("required"):
            assert name in response.headers, f"{where}: header {name} missing"
    schema = spec["content"][media]["schema"]
    body = response.json() if media.endswith(("/json", "+json")) else response.text  # not x-ndjson
    errors = sorted(schema_validator(schema).iter_errors(body), key=str)
    assert not errors, f"{where}: {errors[0].message} at {list(errors[0].absolute_path)}"


# -- servers --------------------------------------------------------------------------------------

def make_certificate(directory: Path) -> tuple[Path, Path]:
    """The daemon's own self-signed certificate (SAN 127.0.0.1), made the way it makes it."""
    made = tls.ensure("", "", directory)
    return made.cert, made.key


def daemon_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The daemon's own server context (TLS 1.2 or newer), as control.py hands it to uvicorn."""
    return tls.server_context(tls.Certificate(cert, key, tls.fingerprint(cert), False))


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


class IdleWorker:
    """Stands in for engine worker `index`: it beats in its row of the worker table, as a worker
    does, and takes no job (max_running=0 gives it none)."""

    BEAT_EVERY = 0.1

    def __init__(self, shared: Shared, index: int = 0) -> None:
        self.shared, self.index = shared, index
        self.stopped = threading.Event()
        self.beat()  # before a Dispatcher reads the generation
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def beat(self) -> None:
        self.shared.set_worker_row(self.index, WorkerRow(os.getpid(), 1, 1, time.monotonic(), 0, 0))

    def _run(self) -> None:
        while not self.stopped.wait(self.BEAT_EVERY):
            self.beat()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


@pytest.fixture(scope="session")
def dispatcher() -> Iterator[Dispatcher]:
    shared = Shared(1)
    worker = IdleWorker(shared)
    try:
        yield Dispatcher(shared)
    finally:
        worker.stop()


class Servers:
    """uvicorn servers sharing one event loop in a background thread, like the control process."""

    def __init__(self, servers: list[tuple[uvicorn.Server, list[socket.socket] | None]]) -> None:
        self.servers = servers
        self.thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)
        self.failure: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            await asyncio.gather(*(s.serve(sockets=socks) for s, socks in self.servers))
        except BaseException as exc:  # surfaced by start() or stop()
            self.failure = exc

    def start(self) -> None:
        self.thread.start()
        for _ in range(500):
            if self.failure or all(s.started for s, _ in self.servers):
                break
            threading.Event().wait(0.01)
        assert self.failure is None and all(s.started for s, _ in self.servers), self.failure

    def stop(self) -> None:
        for s, _ in self.servers:
            s.should_exit = True
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def _config(app: Any, **kwargs: Any) -> uvicorn.Config:
    # The daemon's protocol, with its bounds on request heads (control.py serves it too).
    return uvicorn.Config(app, lifespan="off", log_config=None, access_log=False,
                          **{"http": BoundedHttpTools, **kwargs})


def make_limits(policy: PolicyConfig | None = None, **limits: Any) -> Limits:
    """The tests' limits: max_running=0 (nothing runs), a policy of MAX_TARGET_ADDRESSES."""
    return Limits(**{"rate": 1000.0, "retries": 1, "max_running": 0,
                     "policy": Policy.from_config(policy or PolicyConfig(max_target_addresses=MAX_TARGET_ADDRESSES)),
                     **limits})


@dataclass
class Api:
    store: Store
    orchestrator: Orchestrator
    socket_path: Path
    base_url: str
    tls: ssl.SSLContext
    servers: Servers
    clients: list[httpx.Client] = field(default_factory=list)

    def on_loop(self, call: Callable[[], Any]) -> Any:
        """Run `call` on the API's event loop, as the control process's own code runs (a
        coroutine function is awaited there), and return its result."""
        assert self.servers.loop is not None

        async def run() -> Any:
            result = call()
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(run(), self.servers.loop).result(timeout=30)

    def _client(self, **kwargs: Any) -> httpx.Client:
        client = httpx.Client(timeout=10, event_hooks={"response": [conform]}, **kwargs)
        self.clients.append(client)
        return client

    def unix(self) -> httpx.Client:
        """A client of the Unix socket: trusted, no token."""
        return self._client(base_url="http://netscand", transport=httpx.HTTPTransport(uds=str(self.socket_path)))

    def tcp(self, token: str | None = None, **headers: str) -> httpx.Client:
        """A client of the TLS listener, verifying the test certificate."""
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self._client(base_url=self.base_url, verify=self.tls, headers=headers)

    def token(self, scope: str, name: str | None = None) -> str:
        return self.store.create_token(name or f"{scope}-client", scope)

    def close(self) -> None:
        for client in self.clients:
            client.close()


class ApiRunner:
    """Serves fresh APIs (store, orchestrator, app, two servers) and stops them all at the end."""

    def __init__(self, tmp: pytest.TempPathFactory, certificate: tuple[Path, Path], dispatcher: Dispatcher) -> None:
        self.tmp, self.certificate, self.dispatcher = tmp, certificate, dispatcher
        self.running: list[tuple[Servers, Api]] = []

    def __call__(self, wrap: Wrapper | None = listener, directory: Path | None = None,
                 unix_protocol: type = BoundedHttpTools, **limits: Any) -> Api:
        """A new API, its app wrapped per listener by `wrap` (None: served bare), its database
        and socket in `directory` (default: a new temporary one); `unix_protocol` serves the
        Unix socket (the control process's own, PeerProtocol, reads the client's uid), and
        `limits` override the orchestrator's (see `limits`)."""
        # A short directory: Unix socket paths are limited to 107 bytes.
        directory = directory or self.tmp.mktemp("api")
        store = Store(directory / "netscand.db")
        orchestrator = Orchestrator(store, self.dispatcher, make_limits(**limits),
                                    compose.cve_matching(compose.cve_path(directory)))
        app = create_app(orchestrator, store)
        socket_path = directory / "api.sock"
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind(("127.0.0.1", 0))
        cert, key = self.certificate
        context = daemon_tls_context(cert, key)
        servers = Servers([
            (uvicorn.Server(_config(wrap(app, "unix") if wrap else app, uds=str(socket_path),
                                    http=unix_protocol)), None),
            (uvicorn.Server(_config(wrap(app, "tcp") if wrap else app,
                                    ssl_context_factory=lambda _config, _default: context)), [tcp]),
        ])
        servers.start()
        tls = ssl.create_default_context(cafile=str(cert))
        api = Api(store, orchestrator, socket_path, f"https://127.0.0.1:{tcp.getsockname()[1]}", tls, servers)
        self.running.append((servers, api))
        return api

    def stop_all(self) -> None:
        for servers, api in self.running:
            api.close()
            servers.stop()
            api.store.close()


@pytest.fixture
def api_factory(tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path],
                dispatcher: Dispatcher) -> Iterator[ApiRunner]:
    runner = ApiRunner(tmp_path_factory, certificate, dispatcher)
    try:
        yield runner
    finally:
        runner.stop_all()


@pytest.fixture(scope="module")
def module_api(tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path],
               dispatcher: Dispatcher) -> Iterator[Api]:
    """One API for a module's tests that only need its answers, not an empty store."""
    runner = ApiRunner(tmp_path_factory, certificate, dispatcher)
    try:
        yield runner()
    finally:
        runner.stop_all()


@pytest.fixture
def api(api_factory: ApiRunner) -> Api:
    return api_factory()


@pytest.fixture
def small_disk(require_root: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory on a file system of its own, SMALL_DISK bytes in all (a tmpfs), that a test may
    fill. Request it before api_factory, so that its APIs are stopped before it is unmounted."""
    directory = tmp_path_factory.mktemp("disk")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK},mode=0700", "tmpfs", str(directory)],
                   check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "--lazy", str(directory)], check=True)


def fill(directory: Path) -> None:
    """Write a file in `directory` until its file system has no room left."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, bytes(1 << 16))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


@pytest.fixture
def engine_api(tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]) -> Iterator[Api]:
    """An API over a worker table of its own (ENGINE_WORKERS rows, all zero: no worker has
    started), which the test writes as the workers would."""
    runner = ApiRunner(tmp_path_factory, certificate, Dispatcher(Shared(ENGINE_WORKERS)))
    try:
        yield runner()
    finally:
        runner.stop_all()


@pytest.fixture
def unix(api: Api) -> httpx.Client:
    return api.unix()


def start(client: httpx.Client, body: dict[str, Any] | None = None, key: str | None = None) -> httpx.Response:
    """POST a start request (with `key` as its Idempotency-Key); the default body is a small
    quick scan of a benchmarking address."""
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post("/api/v1/scans/start", json=body or {"target": "198.18.0.1", "profile": "quick"},
                       headers=headers)


def new_site(client: httpx.Client, name: str | None = None) -> str:
    """A new site's id: a scan may name only a site that exists."""
    r = client.post("/api/v1/sites", json={"name": name or f"site {time.monotonic_ns()}"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def stored(api: Api, scan_id: str) -> dict[str, Any]:
    """The scan's row as the store holds it (options and owner are not in any response)."""
    scan = api.store.get_scan(scan_id)
    assert scan is not None
    return scan


def assert_problem(response: httpx.Response, status: int, type_: str | None = None,
                   field_: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert PROBLEM_KEYS <= body.keys() and body["status"] == status
    if type_ is not None:
        assert body["type"] == type_
    if field_ is not None:
        assert body.get("field") == field_, body
    return body


METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and sorted labels, parsed by Prometheus's own parser."""
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == METRICS_CONTENT_TYPE
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}
