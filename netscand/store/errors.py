"""The one exception the store raises for a database it cannot use, in words an operator can act on."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

# Primary result codes (the low byte of the extended code), see https://sqlite.org/rescode.html.
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _CONSTRAINT, _NOTADB = (
    5, 6, 8, 10, 11, 13, 14, 19, 26,
)
# SQLite reports a -shm file it cannot grow as an I/O error; on a file system that has room it
# can always grow, so in practice this is a full disk.
_IOERR_SHMSIZE = 4874

_PLAIN = {
    _BUSY: "database is locked by another process",
    _LOCKED: "database is locked by another process",
    _READONLY: "database is read-only",
    _IOERR: "disk I/O error",
    _CORRUPT: "database file is corrupt",
    _FULL: "disk is full",
    _CANTOPEN: "cannot open the database file",
    _CONSTRAINT: "conflicts with what is already stored",
    _NOTADB: "file is not an SQLite database",
}


class StoreError(Exception):
    """The database refused an operation; the message says why in one line, and `reason` says
    why in a few words that name no file (for API clients, who need not learn where it lives)."""

    def __init__(self, message: str, reason: str = "the database refused the operation") -> None:
        super().__init__(message)
        self.reason = reason


def plain_words(exc: sqlite3.Error, path: Path | None = None) -> str:
    """Why SQLite failed; given the database's path, a write the file system refused is told
    apart from a failing disk."""
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc):
        return "the store is closed"
    code = getattr(exc, "sqlite_errorcode", None)
    if code == _IOERR_SHMSIZE:
        return _PLAIN[_FULL]
    # A file system remounted read-only after an error, or an immutable file, refuses writes
    # through files SQLite already has open: it can only call that an I/O error.
    if code is not None and code & 0xFF == _IOERR and path is not None and refuses_writes(path):
        return _PLAIN[_READONLY]
    if code is not None and code & 0xFF in _PLAIN:
        return _PLAIN[code & 0xFF]
    return f"database error ({exc})"


def refuses_writes(path: Path) -> bool:
    """Whether the database or its write-ahead log is there and may not be written."""
    return any(p.exists() and not os.access(p, os.W_OK) for p in (path, path.with_name(path.name + "-wal")))


def read_only(exc: sqlite3.Error) -> bool:
    """Whether SQLite refused a write because it holds the database read-only."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == _READONLY


def busy(error: StoreError) -> bool:
    """Whether another process held the database past the busy timeout (an admin's backup): unlike
    a full disk or a read-only file, likely gone in a few seconds."""
    return error.reason == _PLAIN[_BUSY]
