"""The orchestrator around resume, without root (the fake engine, a real SQLite store): a scan's
checkpoint goes once the scan will not resume, whatever way it ends: failed at start (its plan no
longer fits), or stopped by a user while the daemon's stop had suspended it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from netscand.scan.cves import CveMatching
from netscand.scan.dispatch import Dispatcher
from netscand.scan.limits import Limits
from netscand.scan.orchestrator import Orchestrator
from netscand.scan.profiles import ScanRequest
from netscand.scan.queue import Queued
from netscand.scan.spec import ScanSpec
from netscand.scan.targets import parse_targets
from netscand.vuln.store import CveStore
from tests.scan.fake_engine import FakeEngine
from tests.scan.harness import TARGET, WatchedStore, policy, run
from tests.scan.test_runner_unit import FakeNet


@pytest.fixture
def orchestrated(tmp_path: Path) -> Iterator[tuple[Orchestrator, WatchedStore]]:
    store = WatchedStore(tmp_path / "netscand.db")
    limits = Limits(rate=3000.0, retries=1, max_running=1, policy=policy())
    yield Orchestrator(store, Dispatcher(FakeEngine(workers=2).shared), limits,
                       CveMatching(CveStore(tmp_path / "cve.db"))), store
    store.close()


def started(orch: Orchestrator, store: WatchedStore) -> str:
    """A scan running, its checkpoint begun (no engine answers it: it stays running)."""
    scan_id = str(uuid.uuid4())
    store.create_scan({"id": scan_id, "target": TARGET, "profile": "normal", "owner": "alice"})
    with orch.queue.claims.claim("alice", 16) as claimed:
        claimed.keep()
    spec = ScanSpec(parse_targets(TARGET), (22, 80), 3000.0, retries=1)
    orch.queue.push(Queued(scan_id, "alice", ScanRequest(TARGET), spec, FakeNet(), remote=False))
    orch.live.admit()
    return scan_id


def test_a_scan_stopped_by_a_user_while_suspended_leaves_no_checkpoint(
        orchestrated: tuple[Orchestrator, WatchedStore]) -> None:
    orch, store = orchestrated

    async def body() -> None:
        scan_id = started(orch, store)
        await orch.io.drain()
        assert store.checkpoint(scan_id) is not None
        orch.live.stop_all("netscand is shutting down")  # suspended: it stays running, to resume
        status = await orch.stop(scan_id, None)  # a user's stop before the daemon is down
        await orch.io.drain()
        assert status["status"] == "cancelled" and store.checkpoint(scan_id) is None

    run(body())


def test_a_scan_that_will_not_resume_leaves_no_checkpoint(orchestrated: tuple[Orchestrator, WatchedStore]) -> None:
    orch, store = orchestrated

    async def body() -> None:
        scan_id = started(orch, store)
        orch.live.stop_all("netscand is shutting down")
        await orch.io.drain()
        orch._not_resumed(scan_id, "the policy changed: some of its targets are now excluded")
        await orch.io.drain()
        scan = store.get_scan(scan_id)
        assert scan is not None and scan["status"] == "failed" and store.checkpoint(scan_id) is None

    run(body())
