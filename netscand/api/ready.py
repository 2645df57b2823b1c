"""Readiness: can the daemon take and run scans now? /healthz only says the API answers.

Two parts, each "ok" or why not: the store (a read through the daemon's own connection, and
room to write on the file system that holds it) and the engine (every worker's heartbeat is
fresh). Nothing here writes: a probe that polled every few seconds must not fill the database.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from netscand.api.problems import store_reason
from netscand.store import StoreError

if TYPE_CHECKING:
    from netscand.scan.health import EngineHealth
    from netscand.store import Store

OK = "ok"
MIN_FREE_BYTES = 1 << 20  # below this a scan's first results would not fit


def check_store(store: Store) -> str:
    try:
        store.list_scans(1, 1)
    except StoreError as exc:
        return store_reason(exc)
    try:
        fs = os.statvfs(store.path.parent)
    except OSError as exc:
        return f"cannot inspect the database's file system: {exc.strerror}"
    if fs.f_flag & os.ST_RDONLY:
        return "the database's file system is read-only"
    # f_bavail, not f_bfree: the daemon need not be root, so the blocks kept for root may not be its.
    if fs.f_bavail * fs.f_frsize < MIN_FREE_BYTES:
        return "disk is full"
    return OK


def checks(store: Store, engine: EngineHealth) -> dict[str, str]:
    return {"store": check_store(store), "engine": engine.trouble() or OK}
