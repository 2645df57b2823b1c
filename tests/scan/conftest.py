"""The fake engine and a dispatcher over its shared memory, and the running scans over them
(harness.py's Harness), for the scan layer's tests without root."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from netscand.scan.admission import Claims
from netscand.scan.cves import CveMatching
from netscand.scan.dispatch import Dispatcher
from netscand.scan.events import Events
from netscand.scan.limits import CurrentLimits, Limits
from netscand.scan.live import Live
from netscand.scan.persist import Persist
from netscand.scan.queue import ScanQueue
from netscand.store.threads import StoreThreads
from netscand.vuln.store import CveStore
from tests.scan.fake_engine import FakeEngine
from tests.scan.harness import Harness, WatchedStore, policy


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(workers=2)


@pytest.fixture
def dispatcher(engine: FakeEngine) -> Dispatcher:
    return Dispatcher(engine.shared)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """Live over the fake engine and a real store in tmp_path, one scan running at a time."""
    store, io = WatchedStore(tmp_path / "netscand.db"), StoreThreads()
    engine, claims = FakeEngine(workers=2), Claims()
    limits = Limits(rate=3000.0, retries=1, max_running=1, policy=policy())
    live = Live(Dispatcher(engine.shared), Persist(store, io, Events(store, io)), ScanQueue(claims), CurrentLimits(limits),
                CveMatching(CveStore(tmp_path / "cve.db")))
    yield Harness(store, engine, live, claims)
    store.close()
