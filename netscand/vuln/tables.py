"""The CVE database's tables and the SQL that writes and reads them (one sqlite3 connection,
given by the store, inside its transaction).

`products` holds (vendor, product) for every criterion of every node of a record, so the
matcher's candidates for a port are one indexed query; rejected records get no row there.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from typing import Any

import msgspec

from netscand.vuln import cpe
from netscand.vuln.records import Configuration, CveRecord, TrackerEntry

NVD = "nvd"
TRACKER = "debian-tracker"
REJECTED = "Rejected"
SCHEMA = """
CREATE TABLE IF NOT EXISTS cves (
    id TEXT PRIMARY KEY, published TEXT NOT NULL, modified TEXT NOT NULL, status TEXT NOT NULL,
    summary TEXT NOT NULL, cvss REAL, cvss_version TEXT, severity TEXT,
    configurations TEXT NOT NULL  -- JSON: the records.Configuration tuple
);
CREATE TABLE IF NOT EXISTS products (
    vendor TEXT NOT NULL, product TEXT NOT NULL, cve_id TEXT NOT NULL,
    PRIMARY KEY (vendor, product, cve_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS products_by_cve ON products (cve_id);
CREATE TABLE IF NOT EXISTS tracker (
    package TEXT NOT NULL, cve TEXT NOT NULL, release TEXT NOT NULL, status TEXT NOT NULL,
    fixed_version TEXT, PRIMARY KEY (package, cve, release)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS full_imports (  -- when a sync last imported the NVD's whole feed set
    name TEXT PRIMARY KEY, at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sources (
    name TEXT PRIMARY KEY, records INTEGER NOT NULL, newest TEXT, imported_at TEXT NOT NULL
);
"""
_COLUMNS = "id, published, modified, status, summary, cvss, cvss_version, severity, configurations"
_UPSERT = f"""INSERT INTO cves ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET published = excluded.published, modified = excluded.modified,
    status = excluded.status, summary = excluded.summary, cvss = excluded.cvss,
    cvss_version = excluded.cvss_version, severity = excluded.severity,
    configurations = excluded.configurations"""
_CONFIGURATIONS = msgspec.json.Decoder(tuple[Configuration, ...])


def write_records(db: sqlite3.Connection, records: list[CveRecord]) -> int:
    """Insert or update `records`, a stored one only by one modified as late or later (a yearly
    feed imported after the modified feed leaves the newer text); how many were written. An id
    twice in `records` is its last copy, with that copy's product rows only."""
    records = list({r.id: r for r in records}.values())
    stored = dict(db.execute("SELECT id, modified FROM cves WHERE id IN (SELECT value FROM json_each(?))",
                             (msgspec.json.encode([r.id for r in records]).decode(),)))
    fresh = [r for r in records if r.modified >= stored.get(r.id, "")]
    db.executemany("DELETE FROM products WHERE cve_id = ?", ((r.id,) for r in fresh))
    db.executemany(_UPSERT, (_row(r) for r in fresh))
    db.executemany("INSERT OR IGNORE INTO products VALUES (?, ?, ?)",
                   ((*name, r.id) for r in fresh if r.status != REJECTED for name in _products(r)))
    return len(fresh)


def _row(r: CveRecord) -> tuple[object, ...]:
    return (r.id, r.published, r.modified, r.status, r.summary, r.cvss, r.cvss_version, r.severity,
            msgspec.json.encode(r.configurations).decode())


def _products(record: CveRecord) -> set[tuple[str, str]]:
    """(vendor, product) of every criterion, as cpe.parse reads them (unescaped, lowercase)."""
    names = (cpe.parse(m.criteria) for c in record.configurations for n in c.nodes for m in n.matches)
    return {(name.vendor, name.product) for name in names if name is not None}


def candidates(db: sqlite3.Connection, vendor: str, product: str) -> list[CveRecord]:
    rows = db.execute(f"""SELECT {", ".join("c." + c for c in _COLUMNS.split(", "))}
        FROM products p JOIN cves c ON c.id = p.cve_id
        WHERE p.vendor = ? AND p.product = ? AND c.status != ? ORDER BY c.id""",
                      (vendor.lower(), product.lower(), REJECTED))
    return [_record(row) for row in rows]


def record(db: sqlite3.Connection, cve_id: str) -> CveRecord | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM cves WHERE id = ?", (cve_id,)).fetchone()
    return _record(row) if row else None


def _record(row: tuple[Any, ...]) -> CveRecord:
    cve_id, published, modified, status, summary, cvss, cvss_version, severity, configurations = row
    return CveRecord(cve_id, published, modified, status, summary, cvss, cvss_version, severity,
                     _CONFIGURATIONS.decode(configurations))


def write_tracker(db: sqlite3.Connection, rows: list[tuple[str, str, str, str, str | None]]) -> int:
    """Replace the tracker's data (each file is the whole tracker); how many (package, CVE) it has."""
    db.execute("DELETE FROM tracker")
    db.executemany("INSERT OR REPLACE INTO tracker VALUES (?, ?, ?, ?, ?)", rows)
    return sum(1 for _ in itertools.groupby(rows, key=lambda row: row[:2]))


def fixed_in(db: sqlite3.Connection, package: str, cve_id: str) -> dict[str, TrackerEntry]:
    rows = db.execute("SELECT release, status, fixed_version FROM tracker WHERE package = ? AND cve = ?",
                      (package, cve_id))
    return {release: TrackerEntry(status, fixed) for release, status, fixed in rows}


def nvd_summary(db: sqlite3.Connection) -> tuple[int, str | None]:
    """How many NVD records the database holds, and the latest time one was modified."""
    count, newest = db.execute("SELECT COUNT(*), MAX(modified) FROM cves").fetchone()
    return count, newest


def write_full_import(db: sqlite3.Connection, at: str) -> None:
    db.execute("INSERT OR REPLACE INTO full_imports VALUES (?, ?)", (NVD, at))


def newest_after_full_import(db: sqlite3.Connection) -> str | None:
    """The newest record's modified time, once the whole feed set has been imported."""
    if db.execute("SELECT 1 FROM full_imports WHERE name = ?", (NVD,)).fetchone() is None:
        return None
    return nvd_summary(db)[1]


def write_source(db: sqlite3.Connection, name: str, records: int, newest: str | None, at: str) -> None:
    db.execute("INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?)", (name, records, newest, at))


def sources(db: sqlite3.Connection) -> Iterator[tuple[str, int, str | None, str]]:
    yield from db.execute("SELECT name, records, newest, imported_at FROM sources ORDER BY name")


