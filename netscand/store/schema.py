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

        -- One device per site; site_key is ifnull(site_id, ''), so that scans of no site share
        -- one inventory and one index serves both.
        CREATE TABLE inventory (
            id TEXT PRIMARY KEY,
            site_id TEXT,
            site_key TEXT NOT NULL,
            -- how it is recognised from scan to scan (store/compare.py keys): mac:<MAC> (not a
            -- randomized one), name:<hostname> (one no other device of the scan has) or ip:<address>
            identity TEXT NOT NULL,
            ip TEXT NOT NULL,
            ip_key BLOB NOT NULL,
            mac TEXT,
            mac_randomized INTEGER NOT NULL DEFAULT 0,
            hostname TEXT,
            vendor TEXT,
            os TEXT,
            present INTEGER NOT NULL DEFAULT 1,  -- 0 once a scan covering it no longer found it
            max_severity INTEGER NOT NULL DEFAULT 0,  -- of its CVEs: 0 none, 1 low .. 4 critical
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            last_scan_id TEXT,
            state TEXT NOT NULL  -- JSON: its open ports as a result lists them, hostnames, evidence
        ) STRICT;
        CREATE UNIQUE INDEX inventory_by_identity ON inventory (site_key, identity);
        CREATE INDEX inventory_by_ip ON inventory (ip_key);
        CREATE INDEX inventory_by_last_seen ON inventory (last_seen);
        CREATE INDEX inventory_by_severity ON inventory (max_severity) WHERE max_severity > 0;

        CREATE TABLE inventory_addresses (
            device_id TEXT NOT NULL REFERENCES inventory (id) ON DELETE CASCADE,
            ip TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            PRIMARY KEY (device_id, ip)
        ) STRICT;

        -- Open ports only: what the filters by port, service and product search.
        CREATE TABLE inventory_ports (
            device_id TEXT NOT NULL REFERENCES inventory (id) ON DELETE CASCADE,
            port INTEGER NOT NULL,
            protocol TEXT NOT NULL,
            service TEXT,
            product TEXT,
            version TEXT,
            PRIMARY KEY (device_id, port, protocol)
        ) STRICT;

        CREATE TABLE inventory_cves (
            device_id TEXT NOT NULL REFERENCES inventory (id) ON DELETE CASCADE,
            cve_id TEXT NOT NULL,
            severity INTEGER NOT NULL,
            port INTEGER,
            protocol TEXT,
            PRIMARY KEY (device_id, cve_id, port, protocol)
        ) STRICT;

        CREATE TABLE changes (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            scan_id TEXT NOT NULL,  -- no foreign key: a device's history outlives the scan
            site_id TEXT,
            device_id TEXT NOT NULL REFERENCES inventory (id) ON DELETE CASCADE,
            ip TEXT NOT NULL,
            kind TEXT NOT NULL,
            port INTEGER,
            protocol TEXT,
            before TEXT,  -- JSON values
            after TEXT,
            at TEXT NOT NULL,
            cve TEXT  -- JSON {id, severity}: cve_found and cve_fixed only
        ) STRICT;
        -- Listed oldest first (at, seq): the site and time filters and that order share the index;
        -- a scan's, by seq.
        CREATE INDEX changes_by_scan ON changes (scan_id, seq);
        CREATE INDEX changes_by_site ON changes (site_id, at, seq);
        CREATE INDEX changes_by_device ON changes (device_id, seq);
        CREATE INDEX changes_by_time ON changes (at, seq);

        -- store/devices.py (GET /api/v1/devices), measured by bench/inventory.py: the list's order
        -- with the id and every column a filter reads, so a page is found by walking this index
        -- alone, never the rows (their JSON state is large); the same columns by id, for counting
        -- the devices that the ports' or CVEs' indexes found; and those indexes with the device id
        -- in them, so they answer alone.
        CREATE INDEX inventory_listing ON inventory
            (site_key, ip_key, id, present, last_seen, max_severity, hostname, vendor, os);
        CREATE INDEX inventory_listing_by_id ON inventory
            (id, site_key, ip_key, present, last_seen, max_severity, hostname, vendor, os);
        -- the text searched for a part of it (no B-tree finds that): the narrowest index to scan
        CREATE INDEX inventory_text ON inventory (hostname, vendor, os);
        CREATE INDEX inventory_gone ON inventory (id) WHERE present = 0;  -- the few, for present=false
        CREATE INDEX inventory_ports_devices_by_port ON inventory_ports (port, protocol, device_id);
        CREATE INDEX inventory_ports_devices_by_service ON inventory_ports (service COLLATE NOCASE, device_id);
        CREATE INDEX inventory_ports_devices_by_product ON inventory_ports (product COLLATE NOCASE, device_id);
        CREATE INDEX inventory_cves_devices_by_cve ON inventory_cves (cve_id, device_id);

        -- What each merged scan covered as it ran (store/inventory.py keep_covered): its diffs
        -- compare over it, not over what today's configuration would make of its request.
        CREATE TABLE scan_coverage (
            scan_id TEXT PRIMARY KEY REFERENCES scans (id) ON DELETE CASCADE,
            ranges TEXT NOT NULL,  -- JSON [[first, last], ...]: IPv4 numbers, inclusive
            tcp TEXT NOT NULL,  -- JSON port lists
            udp TEXT NOT NULL,
            services INTEGER NOT NULL,
            cves INTEGER NOT NULL  -- matched with CVE data loaded
        ) STRICT;
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
        -- A `scan` token's stream: its scans' events, merged with those of no scan (events_by_scan).
        CREATE INDEX events_by_owner ON events (owner, seq);
        CREATE INDEX events_by_time ON events (at);
        """
    )


def m006_webhooks(db: Database) -> None:
    """Issue 13: webhooks and their delivery log (store/webhooks.py)."""
    db.executescript(
        """
        CREATE TABLE webhooks (
            id TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            events TEXT NOT NULL,  -- JSON: the type patterns it takes ("change.*", "scan.state")
            secret TEXT NOT NULL,  -- whsec_<base64>: the sender signs with it, so it is kept whole
            enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
            last_seq INTEGER NOT NULL,  -- its cursor: the newest event seq it has considered
            owner TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) STRICT;
        CREATE INDEX webhooks_newest ON webhooks (created_at DESC, id);

        -- One row per event per webhook: what was sent, how often, and how it went.
        CREATE TABLE deliveries (
            id TEXT PRIMARY KEY,  -- the webhook-id header, the same on every retry
            webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,  -- the event's
            type TEXT NOT NULL,
            body TEXT NOT NULL,  -- as signed and sent: every attempt sends these bytes
            status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
            attempts INTEGER NOT NULL,
            -- Unix time, not a 'Z' timestamp: retries may be under a second apart. Pending only;
            -- while an attempt is under way it holds the attempt's lease, so a daemon that
            -- stopped mid-attempt tries again once the lease is over.
            next_attempt REAL,
            last_status INTEGER,  -- the last attempt's HTTP status, null without an answer
            last_error TEXT,
            created_at TEXT NOT NULL,
            last_attempt_at TEXT,
            delivered_at TEXT,
            UNIQUE (webhook_id, seq)
        ) STRICT;
        CREATE INDEX deliveries_due ON deliveries (webhook_id, next_attempt, seq) WHERE status = 'pending';
        -- for retention: delivered and failed ones go once their last attempt is old enough
        CREATE INDEX deliveries_finished ON deliveries (last_attempt_at) WHERE status != 'pending';
        CREATE INDEX deliveries_by_status ON deliveries (webhook_id, status, seq DESC);
        """
    )


def m007_schedules(db: Database) -> None:
    """Issue 13: schedules and what each of their due times became (store/schedules.py)."""
    db.executescript(
        """
        CREATE TABLE schedules (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            cron TEXT NOT NULL,  -- five fields, in UTC
            request TEXT NOT NULL,  -- JSON: the validated start request (target, profile, site_id, options)
            missed TEXT NOT NULL CHECK (missed IN ('run_once', 'skip')),
            deliver TEXT NOT NULL CHECK (deliver IN ('all', 'changes')),
            enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
            owner TEXT,
            -- made over HTTPS: its scans start as a remote request does (no socket-only targets)
            remote INTEGER NOT NULL CHECK (remote IN (0, 1)),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            next_due TEXT,  -- NULL while disabled
            last_due TEXT
        ) STRICT;
        CREATE INDEX schedules_by_due ON schedules (next_due) WHERE enabled = 1;
        CREATE INDEX schedules_newest ON schedules (created_at DESC, id);
        CREATE INDEX schedules_by_owner ON schedules (owner, created_at DESC, id);

        -- What a due time became: a scan started, or why none was. Missed due times take one
        -- row (the latest of them, with how many in `missed`), however many there were.
        CREATE TABLE schedule_runs (
            schedule_id TEXT NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
            due_at TEXT NOT NULL,
            outcome TEXT NOT NULL CHECK (outcome IN ('started', 'run_missed', 'skipped_missed', 'refused')),
            scan_id TEXT,
            missed INTEGER NOT NULL DEFAULT 0,
            detail TEXT,
            at TEXT NOT NULL,
            PRIMARY KEY (schedule_id, due_at)
        ) STRICT;
        CREATE INDEX schedule_runs_by_scan ON schedule_runs (scan_id) WHERE scan_id IS NOT NULL;
        """
    )


def m008_inventory_keys(db: Database) -> None:
    """The inventory's ports, CVEs and addresses refer to their device by an integer key (its
    rowid, made explicit so that VACUUM keeps it) rather than its UUID: the device filters that
    join them to the listing look a device up per matching row, and an integer compares and
    indexes in a fraction of a 36-character text (bench/inventory.py: the combined broad filters).
    Those three tables are WITHOUT ROWID (the primary key is the row: one B-tree written per row,
    not two). The tables are rebuilt and their rows carried over, as SQLite's table rebuild does it
    (https://sqlite.org/lang_altertable.html#otheralter): with foreign keys off, so that dropping
    the old `inventory` deletes none of the `changes` that refer to it by its id, which stays. So
    `changes` (millions of rows) is not copied; a change whose device is no more (rows an admin
    deleted with foreign keys off) is dropped, as the cascade would have. Also a version per
    site's inventory, that each merge moves: a merge computed outside the writer checks it before
    it writes (store/inventory.py)."""
    if "key" in db["inventory"].columns_dict:
        return  # done, but not recorded: the daemon stopped in between (this step has no transaction)
    db.execute("PRAGMA foreign_keys = OFF")  # only outside a transaction: hence not a transactional step
    if db.execute("PRAGMA foreign_keys").fetchone()[0]:  # else dropping `inventory` would empty `changes`
        raise StoreError("cannot migrate the inventory: foreign keys stay on inside a transaction")
    try:
        with db.atomic():
            _inventory_keys(db)
    finally:
        db.execute("PRAGMA foreign_keys = ON")


def _inventory_keys(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE inventory_new (
            key INTEGER PRIMARY KEY,  -- what its ports, CVEs and addresses refer to; the API shows id
            id TEXT NOT NULL UNIQUE,
            site_id TEXT,
            site_key TEXT NOT NULL,
            identity TEXT NOT NULL,
            ip TEXT NOT NULL,
            ip_key BLOB NOT NULL,
            mac TEXT,
            mac_randomized INTEGER NOT NULL DEFAULT 0,
            hostname TEXT,
            vendor TEXT,
            os TEXT,
            present INTEGER NOT NULL DEFAULT 1,
            max_severity INTEGER NOT NULL DEFAULT 0,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            last_scan_id TEXT,
            state TEXT NOT NULL
        ) STRICT;
        INSERT INTO inventory_new (key, id, site_id, site_key, identity, ip, ip_key, mac, mac_randomized, hostname,
                                   vendor, os, present, max_severity, first_seen, last_seen, last_scan_id, state)
            SELECT rowid, id, site_id, site_key, identity, ip, ip_key, mac, mac_randomized, hostname, vendor, os,
                   present, max_severity, first_seen, last_seen, last_scan_id, state FROM inventory ORDER BY rowid;

        CREATE TABLE inventory_addresses_new (
            device_key INTEGER NOT NULL REFERENCES inventory_new (key) ON DELETE CASCADE,
            ip TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            PRIMARY KEY (device_key, ip)
        ) STRICT, WITHOUT ROWID;
        INSERT INTO inventory_addresses_new SELECT i.key, a.ip, a.first_seen, a.last_seen
            FROM inventory_addresses AS a JOIN inventory_new AS i ON i.id = a.device_id;

        CREATE TABLE inventory_ports_new (
            device_key INTEGER NOT NULL REFERENCES inventory_new (key) ON DELETE CASCADE,
            port INTEGER NOT NULL,
            protocol TEXT NOT NULL,
            service TEXT,
            product TEXT,
            version TEXT,
            PRIMARY KEY (device_key, port, protocol)
        ) STRICT, WITHOUT ROWID;
        INSERT INTO inventory_ports_new SELECT i.key, p.port, p.protocol, p.service, p.product, p.version
            FROM inventory_ports AS p JOIN inventory_new AS i ON i.id = p.device_id;

        -- the merge gives every CVE its port: the key's columns are never null
        CREATE TABLE inventory_cves_new (
            device_key INTEGER NOT NULL REFERENCES inventory_new (key) ON DELETE CASCADE,
            cve_id TEXT NOT NULL,
            severity INTEGER NOT NULL,
            port INTEGER NOT NULL,
            protocol TEXT NOT NULL,
            PRIMARY KEY (device_key, cve_id, port, protocol)
        ) STRICT, WITHOUT ROWID;
        INSERT INTO inventory_cves_new SELECT i.key, c.cve_id, c.severity, c.port, c.protocol
            FROM inventory_cves AS c JOIN inventory_new AS i ON i.id = c.device_id;

        DROP TABLE inventory_addresses;
        DROP TABLE inventory_ports;
        DROP TABLE inventory_cves;
        DROP TABLE inventory;  -- foreign keys off: `changes` keeps its rows and refers to the new one
        -- renaming the parent rewrites the new children's references to it
        ALTER TABLE inventory_new RENAME TO inventory;
        ALTER TABLE inventory_addresses_new RENAME TO inventory_addresses;
        ALTER TABLE inventory_ports_new RENAME TO inventory_ports;
        ALTER TABLE inventory_cves_new RENAME TO inventory_cves;
        -- by changes_by_device, a probe of inventory's id per device's changes
        DELETE FROM changes WHERE device_id NOT IN (SELECT id FROM inventory);

        CREATE UNIQUE INDEX inventory_by_identity ON inventory (site_key, identity);
        CREATE INDEX inventory_by_ip ON inventory (ip_key);
        CREATE INDEX inventory_by_last_seen ON inventory (last_seen);
        CREATE INDEX inventory_by_severity ON inventory (max_severity) WHERE max_severity > 0;
        -- store/devices.py: the list's order and every column a filter reads (a page is found
        -- walking it, never the rows with their JSON state); by key, every column the device's
        -- own filters read (the address too: without it a network filter read each row a port's
        -- or CVE's index found, 77 ms for port 22 in a /16 of 100,000 devices), for the devices
        -- that the ports' or CVEs' indexes found (narrow: one lookup per row they found)
        CREATE INDEX inventory_listing ON inventory
            (site_key, ip_key, id, present, last_seen, max_severity, hostname, vendor, os);
        CREATE INDEX inventory_filtered ON inventory
            (key, site_key, ip_key, present, last_seen, max_severity, os, hostname, vendor);
        CREATE INDEX inventory_text ON inventory (hostname, vendor, os);
        CREATE INDEX inventory_gone ON inventory (key) WHERE present = 0;
        -- These take the primary key (device_key, ...) after their columns: a filter's rows come
        -- by device, so counting the devices needs no sort (and a port's, whatever its protocol).
        CREATE INDEX inventory_ports_by_port ON inventory_ports (port);
        CREATE INDEX inventory_ports_by_service ON inventory_ports (service COLLATE NOCASE);
        CREATE INDEX inventory_ports_by_product ON inventory_ports (product COLLATE NOCASE);
        CREATE INDEX inventory_cves_by_cve ON inventory_cves (cve_id);

        -- What each site's inventory has been merged up to (store/inventory.py): moved by each merge.
        CREATE TABLE inventory_versions (
            site_key TEXT PRIMARY KEY,
            version INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID;
        """
    )


def m009_resume(db: Database) -> None:
    """Issue 14: what a running scan needs to resume after a restart (store/checkpoints.py), and
    a scan's coverage (scan/coverage.py), kept as it ends. New tables and a new column only: a
    scan running when this is applied has no checkpoint, and fails at start as before, keeping
    what it found; a scan ended before it has no coverage (NULL)."""
    db.executescript(
        """
        ALTER TABLE scans ADD COLUMN coverage TEXT;  -- JSON: the result's `coverage`
        CREATE TABLE resume_scans (
            scan_id TEXT PRIMARY KEY REFERENCES scans (id) ON DELETE CASCADE,
            spec TEXT NOT NULL,  -- JSON: the engine's view of the request (scan/resume.py)
            remote INTEGER NOT NULL CHECK (remote IN (0, 1)),
            rate REAL,  -- the request's own rate, NULL for the default
            resumes INTEGER NOT NULL DEFAULT 0  -- restarts it went on after
        ) STRICT;
        CREATE TABLE resume_plans (
            scan_id TEXT NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
            grp INTEGER NOT NULL,
            work INTEGER NOT NULL,
            key BLOB NOT NULL,
            shard_size INTEGER NOT NULL,
            digest BLOB NOT NULL,
            PRIMARY KEY (scan_id, grp, work)
        ) STRICT, WITHOUT ROWID;
        CREATE TABLE resume_shards (
            scan_id TEXT NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
            grp INTEGER NOT NULL,
            work INTEGER NOT NULL,
            shard INTEGER NOT NULL,
            done INTEGER NOT NULL CHECK (done IN (0, 1)),
            granted INTEGER NOT NULL,
            attempt INTEGER NOT NULL,
            pos INTEGER NOT NULL,
            base INTEGER NOT NULL CHECK (base IN (0, 1)),
            PRIMARY KEY (scan_id, grp, work, shard)
        ) STRICT, WITHOUT ROWID;
        CREATE TABLE resume_records (
            scan_id TEXT NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
            grp INTEGER NOT NULL,
            work INTEGER NOT NULL,
            record BLOB NOT NULL
        ) STRICT;
        CREATE INDEX resume_records_by_scan ON resume_records (scan_id, grp, work);
        """
    )


STEPS = (m001_initial, m002_owners_digests_retention, m003_cves, m004_sites_inventory, m005_events,
         m006_webhooks, m007_schedules, m008_inventory_keys, m009_resume)
UNTRANSACTED = {m008_inventory_keys}  # open their own transaction, after a pragma that only works outside one
MIGRATIONS = Migrations("netscand")
for _step in STEPS:
    MIGRATIONS(transactional=_step not in UNTRANSACTED)(_step)


def migrate(db: Database) -> int:
    """Apply pending migrations; return the schema version (the number applied)."""
    known = {step.__name__ for step in STEPS}
    unknown = [m.name for m in MIGRATIONS.applied(db) if m.name not in known]
    if unknown:
        raise StoreError(
            f"the database was written by a newer netscand (migration {unknown[0]}); "
            "upgrade netscand to open it"
        )
    if MIGRATIONS.pending(db):
        MIGRATIONS.apply(db)
        # A migration that rewrote tables left a log the size of what it wrote: give it back now,
        # as nothing else reads the database yet.
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return len(MIGRATIONS.applied(db))
