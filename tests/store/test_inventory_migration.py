"""Migration m008 (integer device keys): an inventory written at m007 (devices, their ports, CVEs,
addresses and changes, by device UUID) reads the same once migrated as the same inventory written
at m008: every device query, every device, every change; change ids go on after the last ever
given; deleting a site still takes its inventory with it."""

from __future__ import annotations

import random
import socket
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlite_utils import Database

from netscand import daemon
from netscand.notify import Notifier
from netscand.store import Store, changes, devices, sites
from netscand.store.inventory import merge
from netscand.store.schema import MIGRATIONS
from tests.store.test_devices import COVERED, filter_sets, found_device

# the m007 tables as they were, and each one's rows as read from an m008 store
M007_ROWS = {
    "sites": "SELECT * FROM sites",
    "inventory": "SELECT id, site_id, site_key, identity, ip, ip_key, mac, mac_randomized, hostname, vendor, os, "
                 "present, max_severity, first_seen, last_seen, last_scan_id, state FROM inventory ORDER BY key DESC",
    "inventory_addresses": "SELECT i.id AS device_id, a.ip, a.first_seen, a.last_seen "
                           "FROM inventory_addresses AS a JOIN inventory AS i ON i.key = a.device_key",
    "inventory_ports": "SELECT i.id AS device_id, p.port, p.protocol, p.service, p.product, p.version "
                       "FROM inventory_ports AS p JOIN inventory AS i ON i.key = p.device_key",
    "inventory_cves": "SELECT i.id AS device_id, c.cve_id, c.severity, c.port, c.protocol "
                      "FROM inventory_cves AS c JOIN inventory AS i ON i.key = c.device_key",
    "changes": "SELECT * FROM changes",
}


def fill(store: Store) -> dict[str, Any]:
    """Two sites and no site, each merged twice; the newest changes deleted (their seqs stay used)."""
    rnd = random.Random(11)
    made = {"a": store.call("t", sites.create, "a")["id"], "b": store.call("t", sites.create, "b")["id"], "none": None}
    for site_id in made.values():
        found = [found_device(rnd, n) for n in sorted(rnd.sample(range(1, 255), 40))]
        for at, seen in (("2026-11-01T00:00:00Z", found), ("2026-12-01T00:00:00Z", found[::3])):
            store.call("t", merge, scan_id=str(uuid.uuid4()), site_id=site_id, found=seen, covered=COVERED, at=at)
    store.call("t", lambda db: db.execute("DELETE FROM changes WHERE seq > (SELECT max(seq) - 5 FROM changes)"))
    return made


def at_m007(path: Path, written: Store) -> None:
    """A store at m007 holding `written`'s inventory, as m007's tables held it."""
    db = Database(sqlite3.connect(path))
    MIGRATIONS.apply(db, stop_before="m008_inventory_keys")
    for table, sql in M007_ROWS.items():
        rows = written.call("t", lambda d, sql=sql: list(d.query(sql)))
        db.conn.executemany(f"INSERT INTO {table} ({', '.join(rows[0])}) VALUES ({', '.join('?' * len(rows[0]))})",
                            [list(r.values()) for r in rows])
    last = written.call("t", lambda d: next(d.query("SELECT seq FROM sqlite_sequence WHERE name = 'changes'"))["seq"])
    db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'changes'", [last])
    db.conn.commit()
    db.close()


def everything(db: Database, made: dict[str, Any]) -> dict[str, Any]:
    ids = [r["id"] for r in db.query("SELECT id FROM inventory ORDER BY id")]
    return {
        "pages": [devices.page(db, f, n, per_page) for f in filter_sets(made) for per_page in (1, 7, 100)
                  for n in (1, 2)],
        "devices": [devices.get(db, i) for i in ids],
        "changes": changes.listing(db, None, None, 1, 10_000),
    }


def test_an_m007_inventory_reads_the_same_once_migrated(store: Store, tmp_path: Path) -> None:
    made = fill(store)
    at_m007(tmp_path / "old.db", store)
    migrated = Store(tmp_path / "old.db")
    try:
        assert migrated.call("t", everything, made) == store.call("t", everything, made)
        assert migrated.call("t", lambda db: list(db.execute("PRAGMA foreign_key_check"))) == []
        plain = {"ip": "198.18.0.250", "ports": [{"port": 22, "protocol": "tcp", "state": "open"}]}
        for s in (migrated, store):  # the next change's id is the same: none is given twice
            s.call("t", merge, scan_id="later", site_id=made["a"], found=[plain], covered=COVERED,
                   at="2026-12-02T00:00:00Z")
        assert migrated.call("t", everything, made)["changes"] == store.call("t", everything, made)["changes"]
        before = migrated.call("t", counts)
        assert migrated.call("t", sites.delete, made["a"]) is True
        after = migrated.call("t", counts)
        assert all(after[t] < before[t] for t in before) and migrated.call("t", orphans) == 0
    finally:
        migrated.close()


CHILDREN = ("inventory_ports", "inventory_cves", "inventory_addresses")


def counts(db: Database) -> dict[str, int]:
    return {t: next(db.query(f"SELECT count(*) AS n FROM {t}"))["n"] for t in ("inventory", *CHILDREN, "changes")}


def orphans(db: Database) -> int:
    """Rows of a device that is no more."""
    return sum(next(db.query(f"SELECT count(*) AS n FROM {t} WHERE device_key NOT IN (SELECT key FROM inventory)"))["n"]
               for t in CHILDREN) + next(db.query(
        "SELECT count(*) AS n FROM changes WHERE device_id NOT IN (SELECT id FROM inventory)"))["n"]


def test_a_change_of_a_deleted_device_does_not_stop_the_migration(store: Store, tmp_path: Path) -> None:
    """An admin's sqlite3 shell (foreign keys off) deleted a device and left its rows: they go,
    the rest stays; `changes` is not rewritten; the log is given back; foreign keys are on again."""
    fill(store)
    path = tmp_path / "old.db"
    at_m007(path, store)
    db = Database(sqlite3.connect(path))
    gone = next(db.query("SELECT id FROM inventory LIMIT 1"))["id"]
    db.execute("DELETE FROM inventory WHERE id = ?", [gone])  # foreign keys are off by default here
    db.conn.commit()
    kept = {t: next(db.query(f"SELECT count(*) AS n FROM {t} WHERE device_id != ?", [gone]))["n"]
            for t in (*CHILDREN, "changes")}
    assert next(db.query("SELECT count(*) AS n FROM changes WHERE device_id = ?", [gone]))["n"] > 0
    root = next(db.query("SELECT rootpage FROM sqlite_master WHERE name = 'changes'"))["rootpage"]
    db.close()
    migrated = Store(path)
    try:
        after = migrated.call("t", counts)
        assert {t: after[t] for t in kept} == kept and migrated.call("t", orphans) == 0
        assert migrated.call("t", lambda d: next(d.query(
            "SELECT rootpage FROM sqlite_master WHERE name = 'changes'"))["rootpage"]) == root
        assert migrated.call("t", lambda d: d.execute("PRAGMA foreign_keys").fetchone()[0]) == 1
        assert (tmp_path / "old.db-wal").stat().st_size == 0
    finally:
        migrated.close()


def test_an_m008_done_but_not_recorded_is_recorded_at_the_next_start(store: Store, tmp_path: Path) -> None:
    """The step has no transaction of its own around its record: a stop between the two must not
    make the next start run it again over its own tables."""
    made = fill(store)
    at_m007(tmp_path / "old.db", store)
    Store(tmp_path / "old.db").close()
    db = Database(sqlite3.connect(tmp_path / "old.db"))
    db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm008_inventory_keys'")
    db.conn.commit()
    db.close()
    again = Store(tmp_path / "old.db")
    try:
        assert again.schema_version == store.schema_version and again.call("t", everything, made) == store.call("t", everything, made)
    finally:
        again.close()


def test_systemd_is_told_while_the_daemon_migrates(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At start, a pending migration is logged, and systemd (waiting for READY=1) gets its status
    and is asked to wait longer, every tick, while it runs; a store already migrated, nothing."""
    fill(store)
    at_m007(tmp_path / "old.db", store)
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind(str(tmp_path / "notify"))
    systemd.settimeout(5)
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})
    monkeypatch.setattr(daemon, "MIGRATION_TICK", 0.05)  # a notify socket's queue is short: sendto would block
    try:
        with structlog.testing.capture_logs() as logs:
            daemon.prepare_store(tmp_path / "old.db", notifier)
        told = systemd.recv(4096).decode().splitlines()
        assert told == ["EXTEND_TIMEOUT_USEC=150000", "STATUS=migrating the database: m008_inventory_keys, m009_resume"]
        assert [e["event"] for e in logs] == ["store.migrating", "store.migrated"]
        assert logs[0]["migrations"] == ["m008_inventory_keys", "m009_resume"]
        systemd.setblocking(False)
        while True:  # what the ticks sent
            try:
                systemd.recv(4096)
            except BlockingIOError:
                break
        with structlog.testing.capture_logs() as logs:
            daemon.prepare_store(tmp_path / "old.db", notifier)
        assert logs == []
        with pytest.raises(BlockingIOError):
            systemd.recv(4096)
    finally:
        systemd.close()
