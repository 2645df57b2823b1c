"""Opening the database file: its permissions, and the pragmas every connection needs."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlite_utils import Database

from netscand.store.errors import StoreError, plain_words

FILE_MODE = 0o640  # results name hosts and services: readable by the netscand group, nobody else
BUSY_TIMEOUT_S = 5.0  # an admin's sqlite3 shell may hold a lock briefly; wait rather than fail


def open_database(path: Path) -> Database:
    _create_file(path)
    try:
        # The daemon may call the store from a thread executor; Store serializes the calls.
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _cannot_open(path, exc) from exc
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"cannot open {path}: cannot switch it to write-ahead logging (mode is {mode})")
        # NORMAL in WAL mode loses at most the last commits on power loss, never consistency.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return Database(conn, execute_plugins=False)
    except sqlite3.Error as exc:
        conn.close()
        raise _cannot_open(path, exc) from exc
    except BaseException:
        conn.close()
        raise


def _cannot_open(path: Path, exc: sqlite3.Error) -> StoreError:
    reason = plain_words(exc, path)
    return StoreError(f"cannot open {path}: {reason}", reason)


def _create_file(path: Path) -> None:
    """Create the file with its final mode before SQLite does: its -wal and -shm copy that mode."""
    try:
        # O_EXCL alone never opens through a link; O_NOFOLLOW says so for whoever reads this.
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return  # an existing file keeps the mode its administrator gave it
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, FILE_MODE)  # the umask may have taken bits away
    finally:
        os.close(fd)
