"""/readyz: 200 when the store answers and has room and every engine worker beats; else 503
naming what is not ready."""

from __future__ import annotations

import os
import time
from pathlib import Path

from netscand.engine.shm import WorkerRow
from tests.api.conftest import Api, ApiRunner, assert_problem, fill

NOT_READY = "urn:netscand:problem:not-ready"


def test_ready_with_a_store_and_beating_workers(api: Api) -> None:
    for client in (api.unix(), api.tcp()):  # no token needed, like /healthz
        r = client.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ready", "checks": {"store": "ok", "engine": "ok"}}


def test_workers_that_never_started_are_named(engine_api: Api) -> None:
    body = assert_problem(engine_api.unix().get("/readyz"), 503, NOT_READY)
    assert body["checks"] == {"store": "ok",
                              "engine": "worker 0 has not started; worker 1 has not started"}
    assert body["detail"] == "not ready: engine: worker 0 has not started; worker 1 has not started"


def test_a_silent_worker_is_named_until_it_beats_again(engine_api: Api) -> None:
    shared = engine_api.orchestrator.dispatcher.shared
    now = time.monotonic()
    shared.set_worker_row(0, WorkerRow(pid=os.getpid(), generation=1, ready=1, heartbeat=now, sent=0, matched=0))
    shared.set_worker_row(1, WorkerRow(pid=os.getpid(), generation=1, ready=1, heartbeat=now - 30, sent=0, matched=0))
    body = assert_problem(engine_api.unix().get("/readyz"), 503, NOT_READY)
    assert body["checks"]["engine"] == "worker 1 has not beaten for 30 s"
    # Replaced, and beating.
    shared.set_worker_row(1, WorkerRow(pid=os.getpid(), generation=2, ready=1, heartbeat=time.monotonic(), sent=0,
                                       matched=0))
    assert engine_api.unix().get("/readyz").status_code == 200


def test_a_closed_store_is_named(api: Api) -> None:
    api.store.close()
    body = assert_problem(api.unix().get("/readyz"), 503, NOT_READY)
    assert body["checks"] == {"store": "the store is closed", "engine": "ok"}
    assert str(api.store.path) not in body["detail"]


def test_a_full_disk_is_named(small_disk: Path, api_factory: ApiRunner) -> None:
    api = api_factory(directory=small_disk)
    assert api.unix().get("/readyz").status_code == 200
    fill(small_disk)
    body = assert_problem(api.unix().get("/readyz"), 503, NOT_READY)
    assert body["checks"]["store"] == "disk is full"

