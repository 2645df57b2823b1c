"""Opening the file: schema migrations, WAL mode, file mode."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from pathlib import Path

import pytest

from netscand.statuses import STATUSES
from netscand.store import Store, StoreError
from netscand.store.schema import STEPS

TABLES = {"scans", "devices", "ports", "tokens"}


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_migrates_an_empty_file(db_path: Path) -> None:
    store = Store(db_path)
    try:
        assert store.schema_version == len(STEPS)
    finally:
        store.close()
    assert TABLES <= _tables(db_path)


def test_reopening_keeps_version_and_data(db_path: Path) -> None:
    first = Store(db_path)
    first.create_scan({"id": "s1", "target": "198.18.0.1", "profile": "quick"})
    version = first.schema_version
    first.close()
    for _ in range(2):
        again = Store(db_path)
        try:
            assert again.schema_version == version
            assert again.get_scan("s1") is not None
        finally:
            again.close()
    with sqlite3.connect(db_path) as conn:
        applied = conn.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0]
    assert applied == len(STEPS)


def test_refuses_a_schema_from_a_newer_version(db_path: Path) -> None:
    Store(db_path).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
            "VALUES ('netscand', 'm999_future', 'x')"
        )
    with pytest.raises(StoreError, match="newer netscand"):
        Store(db_path)


def test_wal_mode(store: Store, db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_file_mode_is_0640_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        store = Store(tmp_path / "netscand.db")
        store.create_scan({"id": "s1", "target": "198.18.0.1", "profile": "quick"})  # the -wal exists now
    finally:
        os.umask(old)
    try:
        for name in ("netscand.db", "netscand.db-wal"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name
    finally:
        store.close()


def test_existing_file_keeps_its_mode(db_path: Path) -> None:
    Store(db_path).close()
    db_path.chmod(0o600)
    Store(db_path).close()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot create .*No such file or directory"):
        Store(tmp_path / "absent" / "netscand.db")


def test_a_file_that_is_not_a_database(db_path: Path) -> None:
    db_path.write_bytes(b"not a database, " * 512)
    with pytest.raises(StoreError, match="not an SQLite database"):
        Store(db_path)


def test_status_check_lists_the_stores_statuses(db_path: Path) -> None:
    # The CHECK is written in a shipped migration, so it is compared here rather than generated:
    # a new status needs a migration, and this test says so.
    Store(db_path).close()
    with sqlite3.connect(db_path) as conn:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'scans'").fetchone()
    listed = re.search(r"CHECK \(status IN \(([^)]*)\)\)", sql)
    assert listed and re.findall(r"'(\w+)'", listed.group(1)) == list(STATUSES)
