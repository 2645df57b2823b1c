"""A completed scan merged into its site's inventory (store/inventory.py), as it ends: after its
results and CVEs are written, before its state says completed, so that its change events come
before its `scan.state` event. The merge is an extra: a failure is logged, and the scan still
completes with its results."""

from __future__ import annotations

import structlog

from netscand.scan.changes import covered_by
from netscand.scan.events import Events
from netscand.scan.spec import ScanSpec
from netscand.store import Store, inventory
from netscand.store.clock import utc_now
from netscand.store.threads import StoreThreads

log = structlog.get_logger()


class Inventory:
    def __init__(self, store: Store, io: StoreThreads, events: Events) -> None:
        self.store = store
        self.io = io
        self.events = events

    async def merge(self, scan_id: str, spec: ScanSpec) -> None:
        """Merge the scan's stored result; never raises."""
        try:
            changes = await self.io.write(self.store.call, f"cannot merge scan {scan_id} into the inventory",
                                          inventory.merge_scan, scan_id, covered_by(spec), utc_now())
        except Exception as exc:
            log.exception("inventory.merge_failed", scan_id=scan_id, error=str(exc))
            return
        self.events.wake()  # the change events are written
        log.info("inventory.merged", scan_id=scan_id, changes=len(changes))
