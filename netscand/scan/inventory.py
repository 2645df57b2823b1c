"""A completed scan merged into its site's inventory (store/inventory.py), as it ends: after its
results and CVEs are written, before its state says completed, so that its change events come
before its `scan.state` event. The merge is an extra: a failure is logged, and the scan still
completes with its results.

The store's one writer thread takes only the merge's writes, in one transaction: reading the
result and the devices concerned (a chunk per store call, so that other calls get the store in
between) and comparing them (seconds for a /16) happen on the merges' own thread, never on the
API's readers. Merges of one site take turns, and the write checks the site's version, so a plan
computed from devices another merge has changed since is computed again rather than written; a
store that another process held too long (an admin's backup) is tried again too, a little later.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from netscand.scan.changes import covered_by
from netscand.scan.events import Events
from netscand.scan.spec import ScanSpec
from netscand.store import Store, inventory, results
from netscand.store.clock import utc_now
from netscand.store.compare import Covered
from netscand.store.errors import StoreError, busy
from netscand.store.threads import StoreThreads

log = structlog.get_logger()
CHUNK = 1000  # devices per read: each holds the store some tens of milliseconds
ATTEMPTS = 3  # plans computed before a merge whose site keeps moving, or whose store stays busy, gives up
BACKOFF = 2.0  # s before a busy store is tried again, times the attempt


class Inventory:
    def __init__(self, store: Store, io: StoreThreads, events: Events) -> None:
        self.store = store
        self.io = io
        self.events = events
        self._sites: dict[str, asyncio.Lock] = {}  # by site_key: one merge of a site at a time

    async def merge(self, scan_id: str, spec: ScanSpec) -> None:
        """Merge the scan's stored result; never raises."""
        try:
            changes = await self.merge_scan(scan_id, covered_by(spec), utc_now())
        except Exception as exc:
            log.exception("inventory.merge_failed", scan_id=scan_id, error=str(exc))
            return
        self.events.wake()  # the change events are written
        log.info("inventory.merged", scan_id=scan_id, changes=len(changes))

    async def merge_scan(self, scan_id: str, covered: Covered, at: str) -> list[dict[str, Any]]:
        """The change records the merge wrote. What the scan covered is kept first, in a write of
        its own: a diff reads it even if the merge fails."""
        doing = f"cannot merge scan {scan_id} into the inventory"
        merging = await self.io.read(self.store.call, doing, inventory.of_scan, scan_id, covered, at)
        await self.io.write(self.store.call, doing, inventory.keep_covered, scan_id, merging.covered)
        found = await self.io.merging(self._found, doing, scan_id)
        async with self._sites.setdefault(merging.site_key, asyncio.Lock()):
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    planned = await self.io.merging(self._plan, doing, merging, found)
                    return await self.io.write(self.store.call, doing, inventory.apply, planned)
                except inventory.Moved:
                    log.info("inventory.merge_replanned", scan_id=scan_id, attempt=attempt)
                except StoreError as exc:
                    if attempt == ATTEMPTS or not busy(exc):
                        raise
                    log.warning("inventory.merge_retried", scan_id=scan_id, attempt=attempt, error=str(exc))
                    await asyncio.sleep(BACKOFF * attempt)
        raise StoreError(f"{doing}: its site's inventory kept changing while it was compared")

    def _found(self, doing: str, scan_id: str) -> list[dict[str, Any]]:
        """The scan's result, a chunk per store call (a completed scan's result no longer changes)."""
        found: list[dict[str, Any]] = []
        while chunk := self.store.call(doing, results.page_after, scan_id, found[-1]["ip"] if found else None, CHUNK):
            found += chunk
        return found

    def _plan(self, doing: str, merging: inventory.Merging, found: list[dict[str, Any]]) -> inventory.Plan:
        """Read the devices the merge concerns, after the site's version, a chunk per store call;
        then compare, off the store."""
        site_key, call = merging.site_key, self.store.call
        version = call(doing, inventory.version, site_key)
        rows: list[dict[str, Any]] = []
        for within in inventory.bounds(merging.covered):
            after = None
            while chunk := call(doing, inventory.known_after, site_key, within, after, CHUNK):
                rows += chunk
                after = (chunk[-1]["ip_key"], chunk[-1]["id"])
        for wanted in inventory.chunks(inventory.identities(found, rows), inventory.LOOKUP_CHUNK):
            rows += call(doing, inventory.by_identity, site_key, wanted)
        return inventory.plan(merging, version, rows, found)
