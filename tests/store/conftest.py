"""Fixtures for the store tests: a Store on a real file in the test's own directory."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from netscand.store import Store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "netscand.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    opened = Store(db_path)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def make_scan(store: Store) -> Callable[..., dict[str, Any]]:
    """`make_scan(status="running")` stores a scan, one second newer than the previous one."""
    seconds = itertools.count()

    def make(**fields: Any) -> dict[str, Any]:
        n = next(seconds)
        scan = {
            "id": str(uuid.uuid4()),
            "target": "198.18.0.0/24",
            "profile": "quick",
            "created_at": f"2026-03-15T10:{n // 60:02d}:{n % 60:02d}Z",
        }
        return store.create_scan(scan | fields)

    return make
