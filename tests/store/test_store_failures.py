"""A database that cannot be written: read-only, full disk, locked, closed.

Each must surface as a StoreError in plain words, leave no transaction open, and lose nothing
that was already committed. These tests need root (dropping to another user, mounting a tmpfs);
CI runs them as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sqlite3
import subprocess
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from netscand.store import Store, StoreError
from netscand.store.errors import plain_words


def _scan(scan_id: str) -> dict[str, Any]:
    return {"id": scan_id, "target": "198.18.0.0/24", "profile": "quick"}


def _in_child_as(uid: int, gid: int, work: Any) -> Any:
    """Run work() in a forked child as another user (root ignores file modes); return what it returns."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            with os.fdopen(write_end, "wb") as out:
                out.write(orjson.dumps(work()))
            status = 0
        except BaseException:  # noqa: BLE001 - the child must reach os._exit; the parent sees the traceback
            traceback.print_exc()
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as data:
        answer = data.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child failed; see its traceback above"
    return orjson.loads(answer)


@pytest.fixture
def shared_dir(require_root: None) -> Iterator[Path]:
    """Reachable by another user: SQLite opens by absolute path, and tmp_path's parents are root-only."""
    made = Path(tempfile.mkdtemp(prefix="netscand-store-"))
    try:
        yield made
    finally:
        shutil.rmtree(made)


def test_read_only_file(shared_dir: Path) -> None:
    home = shared_dir
    store = Store(home / "netscand.db")
    store.create_scan(_scan("s1"))
    store.put_ports("s1", "198.18.0.1", [{"port": 22, "protocol": "tcp", "state": "open"}])
    token = store.create_token("ci", "read")
    store.close()
    (home / "netscand.db").chmod(0o444)
    nobody = pwd.getpwnam("nobody")
    os.chown(home, nobody.pw_uid, nobody.pw_gid)  # it may make the -shm, not change the database

    def work() -> dict[str, Any]:
        ro = Store(home / "netscand.db")
        out: dict[str, Any] = {"errors": []}
        writes = (
            lambda: ro.create_scan(_scan("s2")),
            lambda: ro.update_scan("s1", status="running"),
            lambda: ro.put_ports("s1", "198.18.0.1", [{"port": 80, "protocol": "tcp", "state": "open"}]),
            lambda: ro.create_token("other", "read"),
        )
        for write in writes:
            try:
                write()
                out["errors"].append(None)
            except Exception as exc:  # noqa: BLE001 - the type is what the test checks
                out["errors"].append([type(exc).__name__, str(exc)])
        out["read"] = ro.get_scan("s1")
        out["result"] = ro.result("s1")
        out["verified"] = ro.verify_token(token)  # it cannot record the use, and must not care
        ro.close()
        return out

    out = _in_child_as(nobody.pw_uid, nobody.pw_gid, work)
    for error in out["errors"]:
        assert error is not None and error[0] == "StoreError", error
        assert "database is read-only" in error[1], error
    assert out["read"]["status"] == "queued"
    assert [p["port"] for p in out["result"][0]["ports"]] == [22]
    assert out["verified"] == {"name": "ci", "scope": "read"}


@pytest.fixture
def tiny_disk(tmp_path: Path, require_root: None) -> Iterator[Path]:
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    # Room for a new store (its write-ahead log holds every migration's pages, over 400 KiB since
    # issue 13's schema) and the ballast, not much more: the test fills it.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_full_disk(tiny_disk: Path) -> None:
    path = tiny_disk / "netscand.db"
    ballast = tiny_disk / "ballast"
    store = Store(path)
    try:
        store.create_scan(_scan("s1"))
        token = store.create_token("ci", "read")
        ballast.write_bytes(b"\0" * 64 * 1024)  # freed later, to show the store recovers
        ports = [{"port": p, "protocol": "tcp", "state": "open", "banner": "x" * 400} for p in range(1, 21)]
        saved = 0
        with pytest.raises(StoreError) as caught:
            for host in range(2000):  # 512 KiB runs out long before
                store.put_ports("s1", f"198.18.{host // 256}.{host % 256}", ports)
                saved += 1
        assert "disk is full" in str(caught.value)
        assert str(path) in str(caught.value)
        assert isinstance(caught.value.__cause__, sqlite3.Error)
        assert saved > 0

        # What was committed before is all there; reads and authentication still work.
        assert store.counts("s1") == (saved, saved * len(ports))
        assert store.verify_token(token) == {"name": "ci", "scope": "read"}
        with pytest.raises(StoreError, match="disk is full"):
            store.put_device("s1", "198.18.255.1", extra={"filler": "y" * 100_000})

        # With room again, writes go through: no transaction was left open by the failures.
        ballast.unlink()
        store.update_scan("s1", status="completed")
        store.put_device("s1", "198.18.255.2")
        assert store.list_scans(1, 1)[0][0]["status"] == "completed"
        assert store.counts("s1") == (saved + 1, saved * len(ports))
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT count(*) FROM devices").fetchone()[0] == saved + 1
    conn.close()


def test_locked_database(store: Store, db_path: Path) -> None:
    store.create_scan(_scan("s1"))
    holder = sqlite3.connect(db_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer, e.g. an admin's sqlite3 shell
        with pytest.raises(StoreError, match="database is locked"):
            store.update_scan("s1", status="running")  # after the busy timeout
        assert store.list_scans(1, 1)[0][0]["status"] == "queued"  # WAL: readers are not blocked
        holder.execute("ROLLBACK")
        assert store.update_scan("s1", status="running")["status"] == "running"
    finally:
        holder.close()


def test_closed_store(db_path: Path) -> None:
    store = Store(db_path)
    store.close()
    with pytest.raises(StoreError, match="the store is closed"):
        store.get_scan("s1")
    store.close()  # closing twice is harmless


@contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """The immutable flag refuses writes even through open descriptors, as a file system
    remounted read-only after an error does; cleared at the end (or the file can't be deleted)."""
    subprocess.run(["chattr", "+i", *map(str, paths)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=True)


def test_files_that_refuse_writes_while_open(store: Store, db_path: Path, require_root: None) -> None:
    store.create_scan(_scan("s1"))
    store.put_ports("s1", "198.18.0.1", [{"port": 22, "protocol": "tcp", "state": "open"}])
    with immutable(db_path, db_path.with_name(db_path.name + "-wal")):
        with pytest.raises(StoreError) as caught:
            store.update_scan("s1", status="running")
        # SQLite only sees a failed write(); the store says what it was.
        assert "database is read-only" in str(caught.value) and str(db_path) in str(caught.value)
        assert caught.value.reason == "database is read-only"
        assert store.get_scan("s1")["status"] == "queued"
        assert [p["port"] for p in store.result("s1")[0]["ports"]] == [22]
    assert store.update_scan("s1", status="running")["status"] == "running"


def test_an_io_error_on_a_writable_file_stays_an_io_error(db_path: Path) -> None:
    Store(db_path).close()
    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorcode = 778  # SQLITE_IOERR_WRITE
    assert plain_words(error, db_path) == "disk I/O error"


def test_a_read_only_database_without_unfinished_scans_needs_no_write_to_open(
        db_path: Path, require_root: None) -> None:
    store = Store(db_path)
    store.create_scan(_scan("s1") | {"status": "completed"})
    store.close()  # the last connection: the WAL is checkpointed into the database and removed
    with immutable(db_path):
        reopened = Store(db_path)
        try:
            assert reopened.fail_interrupted("the daemon stopped") == []  # what a daemon does at start
            assert reopened.get_scan("s1")["status"] == "completed"
            with pytest.raises(StoreError, match="database is read-only"):
                reopened.create_scan(_scan("s2"))
        finally:
            reopened.close()


def test_a_store_opened_read_only_writes_once_the_file_takes_writes(db_path: Path, require_root: None) -> None:
    store = Store(db_path)
    store.create_scan(_scan("s1") | {"status": "running"})
    store.close()
    with immutable(db_path):
        reopened = Store(db_path)  # SQLite opens it read-only, and would keep it so
    try:
        with pytest.raises(StoreError, match="cannot mark interrupted scans failed: database is read-only"):
            reopened.fail_interrupted("the daemon stopped")
        assert reopened.fail_interrupted("the daemon stopped") == ["s1"]  # the next call may write
        assert reopened.get_scan("s1")["status"] == "failed"
    finally:
        reopened.close()
