"""/metrics: Prometheus text format 0.0.4, read from the store, the worker table and the app."""

from __future__ import annotations

import os
import time

from netscand.engine.shm import WorkerRow
from tests.api.conftest import ENGINE_WORKERS, Api, assert_problem, scrape, start


def test_scans_by_status_come_from_the_store(api: Api) -> None:
    unix = api.unix()
    ids = [start(unix).json()["id"] for _ in range(3)]
    unix.post(f"/api/v1/scans/{ids[0]}/stop")
    samples = scrape(unix)
    by_status = {dict(labels)["status"]: v for (name, labels), v in samples.items() if name == "netscand_scans"}
    assert by_status == {"queued": 2, "running": 0, "completed": 0, "failed": 0, "cancelled": 1}


def test_requests_are_counted_by_listener_and_code(api: Api) -> None:
    unix, anonymous = api.unix(), api.tcp()
    start(unix)
    unix.get("/nowhere")
    for _ in range(3):
        anonymous.get("/api/v1/scans")
    samples = scrape(api.tcp(api.token("read")))
    counted = {dict(labels)["listener"] + " " + dict(labels)["code"]: v
               for (name, labels), v in samples.items() if name == "netscand_api_requests_total"}
    # The scrape itself is counted once its answer has gone out: it is not in its own numbers.
    assert counted == {"unix 202": 1, "unix 404": 1, "tcp 401": 3}


def test_tls_needs_a_read_token_and_the_unix_socket_none(api: Api) -> None:
    assert_problem(api.tcp().get("/metrics"), 401, "urn:netscand:problem:unauthenticated")
    assert scrape(api.tcp(api.token("read")))
    assert scrape(api.unix())


def test_engine_counters_are_the_workers_own(engine_api: Api) -> None:
    shared = engine_api.orchestrator.dispatcher.shared
    assert shared.workers == ENGINE_WORKERS == 2
    now = time.monotonic()
    # What the workers write in their rows: worker 0 is in its third generation (restarted
    # twice) and beating; worker 1 is in its first and has been silent for a minute.
    shared.set_worker_row(0, WorkerRow(pid=os.getpid(), generation=3, ready=1, heartbeat=now, sent=1200, matched=300))
    shared.set_worker_row(1, WorkerRow(pid=os.getpid(), generation=1, ready=1, heartbeat=now - 60, sent=800,
                                       matched=100))
    time.sleep(1.0)  # the per-second rates need a second since the app was made
    first = scrape(engine_api.unix())
    expected = {
        "netscand_probes_sent_total": (1200, 800), "netscand_replies_received_total": (300, 100),
        "netscand_worker_restarts_total": (2, 0), "netscand_worker_up": (1, 0),
    }
    for name, values in expected.items():
        assert (first[(name, (("worker", "0"),))], first[(name, (("worker", "1"),))]) == values, name
    # Everything the workers did, over at least the second since the app was made.
    assert 0 < first[("netscand_probes_per_second", ())] <= 2000
    assert 0 < first[("netscand_replies_per_second", ())] <= 400

    shared.set_worker_row(0, WorkerRow(pid=os.getpid(), generation=3, ready=1, heartbeat=time.monotonic(),
                                       sent=1200 + 500, matched=300))
    time.sleep(1.0)
    second = scrape(engine_api.unix())
    assert second[("netscand_probes_sent_total", (("worker", "0"),))] == 1700
    assert 0 < second[("netscand_probes_per_second", ())] <= 500
    assert second[("netscand_replies_per_second", ())] == 0


def test_process_basics_are_the_libraries(api: Api) -> None:
    samples = scrape(api.unix())
    assert samples[("process_resident_memory_bytes", ())] > 0
    assert samples[("process_open_fds", ())] > 0
    assert any(name == "python_info" for name, _ in samples)
