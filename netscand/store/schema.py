"""The schema, built and upgraded by a list of migrations applied in order, each in a transaction.

Add a migration by writing a function and appending it to STEPS; never edit one that has shipped.
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

from netscand.store.errors import StoreError


# The status CHECK lists statuses.STATUSES as it was when this shipped (a test holds them equal):
# a new status is a migration, not an edit here.
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE scans (
            id TEXT PRIMARY KEY,
            status TEXT NOT NULL
                CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
            target TEXT NOT NULL,
            profile TEXT NOT NULL,
            site_id TEXT,
            options TEXT NOT NULL,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            estimated_completion TEXT,
            progress_percent INTEGER NOT NULL CHECK (progress_percent BETWEEN 0 AND 100),
            hosts_found INTEGER NOT NULL,
            ports_found INTEGER NOT NULL,
            error TEXT,
            idempotency_key TEXT,
            owner TEXT
        ) STRICT;
        CREATE INDEX scans_newest ON scans (created_at DESC, id);
        CREATE INDEX scans_by_status ON scans (status, created_at DESC, id);
        CREATE INDEX scans_by_site ON scans (site_id, created_at DESC, id);
        -- ifnull: a plain UNIQUE would let two scans without an owner share a key (NULLs differ).
        CREATE UNIQUE INDEX scans_idempotency ON scans (ifnull(owner, ''), idempotency_key)
            WHERE idempotency_key IS NOT NULL;

        CREATE TABLE devices (
            scan_id TEXT NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
            ip TEXT NOT NULL,
            ip_key BLOB NOT NULL,
            mac TEXT,
            hostname TEXT,
            vendor TEXT,
            os_guess TEXT,
            timed_out INTEGER,
            extra TEXT NOT NULL,
            PRIMARY KEY (scan_id, ip)
        ) STRICT;
        CREATE INDEX devices_by_address ON devices (scan_id, ip_key);

        CREATE TABLE ports (
            scan_id TEXT NOT NULL,
            ip TEXT NOT NULL,
            port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
            protocol TEXT NOT NULL,
            state TEXT NOT NULL,
            service TEXT,
            product TEXT,
            version TEXT,
            banner TEXT,
            cpe TEXT,
            cves TEXT,
            PRIMARY KEY (scan_id, ip, port, protocol),
            FOREIGN KEY (scan_id, ip) REFERENCES devices (scan_id, ip) ON DELETE CASCADE
        ) STRICT;

        CREATE TABLE tokens (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            scope TEXT NOT NULL CHECK (scope IN ('read', 'scan', 'admin')),
            hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            last_used_at TEXT,
            revoked_at TEXT
        ) STRICT;
        -- A revoked token keeps its row (for the record) and frees its name.
        CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at IS NULL;
        """
    )


def m002_owners_digests_retention(db: Database) -> None:
    """Issue 9: lists filtered by owner, the digest of the request an Idempotency-Key was first
    used with (a replay with another body is refused), and finished scans found by age."""
    db.executescript(
        """
        ALTER TABLE scans ADD COLUMN request_digest TEXT;
        CREATE INDEX scans_by_owner ON scans (owner, created_at DESC, id);
        CREATE INDEX scans_by_finish ON scans (finished_at) WHERE finished_at IS NOT NULL;
        """
    )


def m003_cves(db: Database) -> None:
    """Issue 11: a scan's CVE data and counts (scan/cves.py), and a port's note when its CVEs
    could not be matched (a product without a version)."""
    db.executescript(
        """
        ALTER TABLE scans ADD COLUMN cve TEXT;
        ALTER TABLE ports ADD COLUMN cve_note TEXT;
        """
    )


def m004_sites_inventory(db: Database) -> None:
    """Issue 13: sites, the device inventory merged from every completed scan, and the changes
    each scan found (store/inventory.py, store/sites.py)."""
    db.executescript(
        """
        CREATE TABLE sites (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) STRICT;
        CREATE UNIQUE INDEX sites_by_name ON sites (name);
        """
    )


def m005_events(db: Database) -> None:
    """Issue 13: what happened, in order, for Server-Sent Events (resumed by seq, the event's id)
    and webhooks (store/events.py)."""
    db.executescript(
        """
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            type TEXT NOT NULL,
            scan_id TEXT,
            site_id TEXT,
            owner TEXT,
            at TEXT NOT NULL,
            data TEXT NOT NULL
        ) STRICT;
        CREATE INDEX events_by_scan ON events (scan_id, seq);
        CREATE INDEX events_by_time ON events (at);
        """
    )


def m006_webhooks(db: Database) -> None:
    """Issue 13: webhooks and their delivery log (store/webhooks.py)."""


def m007_schedules(db: Database) -> None:
    """Issue 13: schedules and what each of their due times became (store/schedules.py)."""


STEPS = (m001_initial, m002_owners_digests_retention, m003_cves, m004_sites_inventory, m005_events,
         m006_webhooks, m007_schedules)
MIGRATIONS = Migrations("netscand")
for _step in STEPS:
    MIGRATIONS()(_step)


def migrate(db: Database) -> int:
    """Apply pending migrations; return the schema version (the number applied)."""
    known = {step.__name__ for step in STEPS}
    unknown = [m.name for m in MIGRATIONS.applied(db) if m.name not in known]
    if unknown:
        raise StoreError(
            f"the database was written by a newer netscand (migration {unknown[0]}); "
            "upgrade netscand to open it"
        )
    MIGRATIONS.apply(db)
    return len(MIGRATIONS.applied(db))
