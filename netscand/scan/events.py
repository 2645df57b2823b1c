"""Live events: written to the store in order with the scan's other writes, then announced to
whoever waits (the SSE streams, the webhook sender), who read them back from the store by seq.

Reading back from the store, rather than handing events around in memory, is what makes
Last-Event-ID resume and webhook retries after a restart the same code path as the live stream.
"""

from __future__ import annotations

import asyncio
from typing import Any

from netscand.store import Store
from netscand.store import events as stored
from netscand.store.threads import StoreThreads


class Events:
    def __init__(self, store: Store, io: StoreThreads) -> None:
        self.store = store
        self.io = io
        self._waiters: set[asyncio.Future[None]] = set()

    def publish(self, type: str, data: dict[str, Any], *, scan_id: str | None = None,
                site_id: str | None = None, owner: str | None = None) -> None:
        """Queue the event behind every earlier write; waiters wake once it is written."""
        written = self.io.write(self.store.call, f"cannot record event {type}", stored.insert, type, data,
                                scan_id=scan_id, site_id=site_id, owner=owner)
        written.add_done_callback(lambda _: self.wake())

    def wake(self) -> None:
        """Events were written (by publish, or inside another write such as the inventory's
        merge): every waiter reads the store again."""
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Until the next wake, or `timeout` seconds."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)
