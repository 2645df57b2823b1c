"""Store: the daemon's one handle on its SQLite file, used by the orchestrator (writes) and the API (reads).

Every call holds one lock, so the API may call from a thread executor while the orchestrator
writes; every sqlite3 error leaves as a StoreError with no transaction left open.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlite_utils import Database

from netscand.statuses import FINISHED
from netscand.store import results, scans, schema, tokens
from netscand.store.connection import open_database
from netscand.store.errors import StoreError, plain_words, read_only, refuses_writes

T = TypeVar("T")
DELETE_CHUNK = 5000  # result rows per transaction when a scan is deleted: tens of milliseconds


class Store:
    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the database at `path`; the caller makes its directory."""
        self.path = path
        self._lock = threading.RLock()
        self._db = open_database(path)
        try:
            with self._guard("cannot prepare the database"):
                self.schema_version: int = schema.migrate(self._db)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # Scans

    def create_scan(self, scan: dict[str, Any]) -> dict[str, Any]:
        with self._guard(f"cannot save scan {scan.get('id')}") as db:
            return scans.create(db, scan)

    def get_scan(self, scan_id: str) -> dict[str, Any] | None:
        with self._guard(f"cannot read scan {scan_id}") as db:
            return scans.get(db, scan_id)

    def scan_by_idempotency_key(self, owner: str | None, key: str) -> dict[str, Any] | None:
        with self._guard("cannot look up the idempotency key") as db:
            return scans.by_idempotency_key(db, owner, key)

    def update_scan(self, scan_id: str, **fields: Any) -> dict[str, Any]:
        with self._guard(f"cannot update scan {scan_id}") as db:
            return scans.update(db, scan_id, fields)

    def scan_counts(self) -> dict[str, int]:
        with self._guard("cannot count scans") as db:
            return scans.counts_by_status(db)

    def list_scans(
        self, page: int, per_page: int, status: str | None = None, site_id: str | None = None,
        owner: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        with self._guard("cannot list scans") as db:
            return scans.page(db, page, per_page, status, site_id, owner)

    def finished_before(self, cutoff: str, limit: int) -> list[str]:
        with self._guard("cannot look up old scans") as db:
            return scans.finished_before(db, cutoff, limit)

    def delete_results(self, scan_id: str) -> int:
        """Delete up to DELETE_CHUNK of a finished scan's result rows, in one transaction; how
        many went (0: none left, or no such finished scan). A caller that deletes chunk by chunk
        lets readers and other writers in between, whatever the scan's size."""
        with self._guard(f"cannot delete scan {scan_id}") as db:
            scan = scans.get(db, scan_id)
            if scan is None or scan["status"] not in FINISHED:
                return 0
            return results.delete_some(db, scan_id, DELETE_CHUNK)

    def delete_scan(self, scan_id: str) -> bool:
        """Delete a finished scan with what is left of its results; False if there is no such
        finished scan."""
        while self.delete_results(scan_id):
            pass
        with self._guard(f"cannot delete scan {scan_id}") as db:
            return scans.delete(db, scan_id)

    def fail_interrupted(self, reason: str) -> list[str]:
        with self._guard("cannot mark interrupted scans failed") as db:
            return scans.fail_active(db, reason)

    # Results

    def put_device(
        self, scan_id: str, ip: str, *, mac: str | None = None, hostname: str | None = None,
        vendor: str | None = None, os_guess: str | None = None, timed_out: bool | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        with self._guard(f"cannot save device {ip} of scan {scan_id}") as db:
            results.put_device(db, scan_id, ip, mac=mac, hostname=hostname, vendor=vendor, os_guess=os_guess,
                               timed_out=timed_out, extra=extra)

    def put_ports(self, scan_id: str, ip: str, ports: list[dict[str, Any]]) -> None:
        with self._guard(f"cannot save ports of {ip} in scan {scan_id}") as db:
            results.put_ports(db, scan_id, ip, ports)

    def result(self, scan_id: str) -> list[dict[str, Any]]:
        with self._guard(f"cannot read the result of scan {scan_id}") as db:
            return results.result(db, scan_id)

    def cve_devices(self, scan_id: str) -> list[dict[str, Any]]:
        """The devices a re-match concerns, with those of their ports (see results.cve_devices)."""
        with self._guard(f"cannot read the result of scan {scan_id}") as db:
            return results.cve_devices(db, scan_id)

    def result_page(self, scan_id: str, page: int, per_page: int) -> list[dict[str, Any]]:
        with self._guard(f"cannot read the result of scan {scan_id}") as db:
            return results.result_page(db, scan_id, page, per_page)

    def put_devices(self, scan_id: str, devices: list[dict[str, Any]]) -> None:
        """Devices with their ports (see results.put_devices), in one transaction."""
        with self._guard(f"cannot save {len(devices)} devices of scan {scan_id}") as db:
            results.put_devices(db, scan_id, devices)

    def put_cves(self, scan_id: str, devices: list[dict[str, Any]], cve: dict[str, Any]) -> None:
        """A re-match of a scan's CVEs: its devices' CVE fields (see results.put_cves) and the
        scan's `cve`, in one transaction."""
        with self._guard(f"cannot save the CVEs of scan {scan_id}") as db, db.atomic():
            results.put_cves(db, scan_id, devices)
            scans.update(db, scan_id, {"cve": cve})

    def counts(self, scan_id: str) -> tuple[int, int]:
        with self._guard(f"cannot count the result of scan {scan_id}") as db:
            return results.counts(db, scan_id)

    def call(self, doing: str, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """query(db, *args, **kwargs) under the store's lock, a sqlite3 error raised as a
        StoreError that begins with `doing`. The store's newer modules (sites, inventory,
        events, webhooks, schedules) are functions of a Database called this way, rather than
        each growing a method here."""
        with self._guard(doing) as db:
            return query(db, *args, **kwargs)

    # Tokens

    def create_token(self, name: str, scope: str) -> str:
        with self._guard(f"cannot create token {name!r}") as db:
            return tokens.create(db, name, scope)

    def verify_token(self, token: str) -> dict[str, str] | None:
        with self._guard("cannot check the token") as db:
            found = tokens.find(db, token)
        if found is None:
            return None
        if tokens.is_stale(found["last_used_at"]):
            try:
                with self._guard("cannot record token use") as db:
                    tokens.touch(db, found["id"])
            except StoreError:
                pass  # on a full or read-only disk, clients must still be able to read their results
        return {"name": found["name"], "scope": found["scope"]}

    def list_tokens(self) -> list[dict[str, Any]]:
        with self._guard("cannot list tokens") as db:
            return tokens.listing(db)

    def revoke_token(self, name: str) -> bool:
        with self._guard(f"cannot revoke token {name!r}") as db:
            return tokens.revoke(db, name)

    @contextmanager
    def _guard(self, doing: str) -> Iterator[Database]:
        """Serialize the call; turn a sqlite3 error into a StoreError saying what failed and why."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                self._rollback()
                reason = plain_words(exc, self.path)
                if read_only(exc):
                    self._reopen_if_writable()
                raise StoreError(f"{doing}: {reason} ({self.path})", reason) from exc
            except BaseException:
                self._rollback()
                raise

    def _reopen_if_writable(self) -> None:
        """SQLite opens a file that refuses writes read-only, and keeps it so. Once the file takes
        writes again (its file system remounted read-write), the next call gets a connection
        that may write, rather than the daemon needing a restart."""
        if refuses_writes(self.path):
            return
        try:
            fresh = open_database(self.path)
        except StoreError:
            return  # still unusable: the next refused write tries again
        self._db.close()
        self._db = fresh

    def _rollback(self) -> None:
        # atomic() has normally rolled back already; this covers a failed ROLLBACK or a read
        # that a savepoint left open, so the next call never runs inside a dead transaction.
        try:
            if self._db.conn.in_transaction:
                self._db.conn.rollback()
        except sqlite3.Error:
            pass  # nothing more can be done; the connection reports the state on its next use
