"""The fake engine and a dispatcher over its shared memory, for the scan layer's tests without root."""

from __future__ import annotations

import pytest

from netscand.scan.dispatch import Dispatcher
from tests.scan.fake_engine import FakeEngine


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(workers=2)


@pytest.fixture
def dispatcher(engine: FakeEngine) -> Dispatcher:
    return Dispatcher(engine.shared)
