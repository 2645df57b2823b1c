"""Deletion of finished scans: at a client's request, and once past daemon.retention_days (with
the old events and webhook deliveries).

A scan's results go one chunk per write, so the store's one writer thread takes other writes in
between (running scans' results, new scans), however large the scan.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from netscand.scan.limits import CurrentLimits
from netscand.scan.persist import Persist
from netscand.store import Store, StoreError
from netscand.store import events as stored_events
from netscand.store import webhooks as stored_webhooks
from netscand.store.clock import utc_now
from netscand.store.threads import StoreThreads

log = structlog.get_logger()

RETENTION_EVERY_S = 3600.0  # how often finished scans past daemon.retention_days are deleted
RETENTION_BATCH = 100  # scans looked up per round of deletion
EVENTS_CHUNK = 5000  # events deleted per write, as results are: other writes come in between


class Retention:
    def __init__(self, store: Store, io: StoreThreads, persist: Persist, limits: CurrentLimits) -> None:
        self.store = store
        self.io = io
        self.persist = persist
        self.limits = limits

    async def delete(self, scan_id: str) -> bool:
        """Delete a finished scan and its results; False if it is not there (or not finished)."""
        while await self.io.write(self.store.delete_results, scan_id):
            pass
        deleted = await self.io.write(self.store.delete_scan, scan_id)
        if deleted:
            self.persist.forget(scan_id)
            await self._delete_events(scan_id)
        return deleted

    async def _delete_events(self, scan_id: str) -> None:
        # The scan is gone whatever happens here: events left go at the retention age (expire).
        try:
            while await self.io.write(self.store.call, f"cannot delete the events of scan {scan_id}",
                                      stored_events.delete_of_scan, scan_id, EVENTS_CHUNK):
                pass
        except StoreError as exc:
            log.error("scan.events_delete_failed", scan_id=scan_id, error=str(exc))

    async def expire(self) -> int:
        """Delete finished scans that ended more than retention_days ago (0: none); how many went."""
        days = self.limits.now.retention_days
        if not days:
            return 0
        cutoff, deleted = utc_now(-timedelta(days=days)), 0
        while ids := await self.io.read(self.store.finished_before, cutoff, RETENTION_BATCH):
            gone = sum([await self.delete(scan_id) for scan_id in ids])
            deleted += gone
            if not gone:
                break  # nothing could go (deleted by a client meanwhile): the next round sees
        if deleted:
            log.info("scan.expired", scans=deleted, retention_days=days)
        # Events of no scan, and any a deletion cut short left of its scan, once as old.
        while await self.io.write(self.store.call, "cannot delete old events", stored_events.delete_unowned,
                                  cutoff, EVENTS_CHUNK):
            pass
        # Webhook deliveries sent or given up as long ago, with the bodies they keep; pending ones stay.
        while await self.io.write(self.store.call, "cannot delete old webhook deliveries",
                                  stored_webhooks.delete_finished, cutoff, EVENTS_CHUNK):
            pass
        return deleted

    async def expire_forever(self) -> None:
        """expire() every RETENTION_EVERY_S, with the retention of the time (a reload changes it)."""
        while True:
            try:
                await self.expire()
            except StoreError as exc:
                log.error("scan.retention_failed", error=str(exc))  # the next round tries again
            except Exception:
                log.exception("scan.retention_failed")
            await asyncio.sleep(RETENTION_EVERY_S)
