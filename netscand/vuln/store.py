"""CveStore: the CVE database, a SQLite file of its own beside the scan store (`<state dir>/cve.db`):
NVD data is large and refreshed on its own schedule, so the scan store's file and WAL stay small.

Every method blocks and may be called from any thread: each call opens its own connection (WAL:
matching reads while an import writes). An import is one transaction over all its files: a
refused file, or any SQLite error, leaves the database as it was.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from netscand.vuln import nvd, tables, tracker
from netscand.vuln.errors import CveStoreError
from netscand.vuln.inputs import Source
from netscand.vuln.records import CveRecord, CveStatus, SourceStatus, TrackerEntry

DB_NAME = "cve.db"
BUSY_TIMEOUT_S = 30.0  # a sync's import holds the write lock for a while; readers never wait (WAL)


class ImportReport(msgspec.Struct, frozen=True):
    source: str  # "nvd" | "debian-tracker"
    files: int
    records: int  # read from the files
    written: int  # new or updated (an NVD record older than the stored one is left)
    total: int  # what the database holds of this source now


class CveStore:
    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the database at `path`; the caller makes its directory."""
        self.path = path
        with self._connection("cannot prepare") as db:
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
                raise CveStoreError(f"cannot open {path}: cannot switch it to write-ahead logging")
            db.executescript(tables.SCHEMA)

    def import_nvd(self, paths: Sequence[Source], full_feeds: bool = False) -> ImportReport:
        """Load NVD JSON 2.0 files (feeds, API responses, single records) in one transaction;
        ImportRefused for a bad file, and then nothing of any of them is kept. `full_feeds`:
        the files are the NVD's whole feed set, so later syncs may ask only for changes."""
        read = written = 0
        with self._transaction("cannot import NVD data into") as db:
            for path in paths:  # one file's records in memory at a time
                records = nvd.read(path)
                read, written = read + len(records), written + tables.write_records(db, records)
            total, newest = tables.nvd_summary(db)
            now = _now()
            tables.write_source(db, tables.NVD, total, newest, now)
            if full_feeds:
                tables.write_full_import(db, now)
        self._truncate_wal()
        return ImportReport(tables.NVD, len(paths), read, written, total)

    def synced_newest(self) -> str | None:
        """The newest record's modified time if a sync has imported the whole feed set, else None."""
        with self._connection("cannot read") as db:
            return tables.newest_after_full_import(db)

    def import_tracker(self, path: Source) -> ImportReport:
        """Replace the Debian Security Tracker data with the file's, in one transaction."""
        rows = tracker.read(path)
        with self._transaction("cannot import tracker data into") as db:
            entries = tables.write_tracker(db, rows)
            now = _now()
            tables.write_source(db, tables.TRACKER, entries, now, now)
        self._truncate_wal()
        return ImportReport(tables.TRACKER, 1, entries, entries, entries)

    def candidates(self, vendor: str, product: str) -> list[CveRecord]:
        """Every non-rejected record with a criterion naming cpe vendor:product (unescaped, any case)."""
        with self._connection("cannot read") as db:
            return tables.candidates(db, vendor, product)

    def record(self, cve_id: str) -> CveRecord | None:
        with self._connection("cannot read") as db:
            return tables.record(db, cve_id)

    def fixed_in(self, package: str, cve_id: str) -> dict[str, TrackerEntry]:
        """Release codename -> what the tracker says of `cve_id` in Debian source `package` there."""
        with self._connection("cannot read") as db:
            return tables.fixed_in(db, package, cve_id)

    def status(self) -> CveStatus:
        with self._connection("cannot read") as db:
            found = tuple(SourceStatus(*row) for row in tables.sources(db))
        nvd_records = sum(s.records for s in found if s.name == tables.NVD)
        updated = max((s.imported_at for s in found if s.imported_at), default=None)
        age = (datetime.now(UTC) - datetime.fromisoformat(updated)).total_seconds() if updated else None
        return CveStatus(loaded=nvd_records > 0, sources=found, updated_at=updated, age_seconds=age)

    def _truncate_wal(self) -> None:
        """An import writes hundreds of MB through the WAL, which SQLite otherwise keeps at its
        largest size; truncated once the import is in the database (left as is while a reader
        holds it: the next import tries again)."""
        with self._connection("cannot checkpoint") as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def _connection(self, doing: str) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise CveStoreError(f"{doing} {self.path}: {exc}") from None
        try:
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: loses at most the last commit on power loss
            yield db
        except sqlite3.Error as exc:
            raise CveStoreError(f"{doing} {self.path}: {exc}") from None
        finally:
            db.close()

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._connection(doing) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.rollback()
                raise
            db.commit()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
