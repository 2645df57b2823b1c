"""The store off the event loop: writes in order on one thread, reads on a few others.

A store call can wait: for SQLite's busy timeout while another process holds the lock, for a
checkpoint, for a large batch of results. The control process's event loop must never wait
(its heartbeat and every other client would wait with it), so it hands every call here. Writes
go through ONE thread, so they land in the order they were made: a scan's last results before
the state that says it completed. Reads have a small pool of their own, so a burst of them
never queues behind the writer's batches (they still take turns on the store's one lock).
The inventory's merges read and compare for seconds each (a /16): they have one thread of their
own, so that scans ending together take none of the readers the API answers with, and merge one
at a time.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
READERS = 4  # requests reading at once; more wait their turn (the store serializes them anyway)


class StoreThreads:
    def __init__(self, readers: int = READERS) -> None:
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store-write")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="store-read")
        self._merger = ThreadPoolExecutor(1, thread_name_prefix="store-merge")

    def write(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """Queue a write behind every earlier one; the future has its result or its exception."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._writer, functools.partial(call, *args, **kwargs))

    async def read(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, functools.partial(call, *args, **kwargs))

    async def merging(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A merge's reads and comparison, behind every earlier merge's, off the readers."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._merger, functools.partial(call, *args, **kwargs))

    async def drain(self) -> None:
        """Wait until every write queued so far is done."""
        await self.write(lambda: None)
