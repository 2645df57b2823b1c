"""Live events: written to the store in order with the scan's other writes, then announced to
whoever waits (the SSE streams, the webhook sender), who read them back from the store by seq.

Reading back from the store, rather than handing events around in memory, is what makes
Last-Event-ID resume and webhook retries after a restart the same code path as the live stream.

A scan's own events (its state, its progress, each host up and port open) are written by the
scan's writers (admission, persist): its state's event in the transaction that writes the state
(a write the store refuses is retried with it), the others queued right behind the write they
tell of. A host or port is marked told once its event is written: one the store refused is
told again with the host's next write (at the latest the scan's final save).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from netscand.store import Store, StoreError
from netscand.store import events as stored
from netscand.store.threads import StoreThreads

log = structlog.get_logger()

News = list[tuple[str, dict[str, Any]]]  # (type, data) of a scan's events, in order
PROGRESS = ("progress_percent", "hosts_found", "ports_found")  # a change of these is news


class Announced:
    """What a running scan has told so far: each host up and each port open once, its progress
    when it moved. Memory in proportion to what answered, dropped when the scan ends."""

    def __init__(self, scan_id: str) -> None:
        self.scan_id = scan_id
        self.hosts: set[str] = set()  # told, or being written
        self.ports: set[tuple[str, int, str]] = set()
        self.progress: tuple[object, ...] | None = None

    def news(self, devices: list[dict[str, Any]], progress: dict[str, Any] | None) -> News:
        """The events of a write of `devices` (device rows, persist.device_row) and `progress`;
        what they tell counts as told from now on, unless `lost` gives it back."""
        news: News = []
        for device in devices:
            ip = device["ip"]
            if ip not in self.hosts:
                self.hosts.add(ip)
                news.append(("host.up", {"scan_id": self.scan_id, "ip": ip}
                             | ({"mac": device["mac"]} if device.get("mac") else {})))
            for port in device["ports"]:
                key = (ip, port["port"], port["protocol"])
                if port["state"] == "open" and key not in self.ports:
                    self.ports.add(key)
                    news.append(("port.found", _port_found(self.scan_id, ip, port)))
        if progress is not None and (moved := tuple(progress[k] for k in PROGRESS)) != self.progress:
            self.progress = moved
            news.append(("scan.progress", {"id": self.scan_id, **progress}))
        return news

    def lost(self, news: News) -> None:
        """The store refused `news`: what they told is untold, for a later write to tell."""
        for type, data in news:
            if type == "host.up":
                self.hosts.discard(data["ip"])
            elif type == "port.found":
                self.ports.discard((data["ip"], data["port"], data["protocol"]))
            else:
                self.progress = None


def _port_found(scan_id: str, ip: str, port: dict[str, Any]) -> dict[str, Any]:
    data = {"scan_id": scan_id, "ip": ip, "port": port["port"], "protocol": port["protocol"]}
    return data | ({"service": port["service"]} if port.get("service") else {})


class Events:
    def __init__(self, store: Store, io: StoreThreads) -> None:
        self.store = store
        self.io = io
        self.written = 0  # wakes so far: a reader that saw it change during its read reads again
        self.closed = False  # the daemon is stopping: streams end once they have read what is written
        self._waiters: set[asyncio.Future[None]] = set()
        self._announced: dict[str, Announced] = {}  # running scans' hosts and ports told

    # -- publishing ------------------------------------------------------------------------------
    def ended(self, scan_id: str) -> None:
        """The scan ended: nothing more of it is told."""
        self._announced.pop(scan_id, None)

    def found(self, scan_id: str, devices: list[dict[str, Any]], progress: dict[str, Any] | None = None) -> None:
        """The hosts and ports first seen in a write of a scan's devices, and its progress if it
        moved, queued behind that write."""
        announced = self._announced.setdefault(scan_id, Announced(scan_id))
        if news := announced.news(devices, progress):
            kinds = ",".join(sorted({type for type, _ in news}))
            written = self.io.write(self.store.call, f"cannot record events {kinds} of scan {scan_id}",
                                    stored.insert_of_scan, scan_id, news)
            written.add_done_callback(lambda done: self._done(announced, news, kinds, done))

    def _done(self, announced: Announced, news: News, kinds: str, done: asyncio.Future[Any]) -> None:
        exc = None if done.cancelled() else done.exception()
        if exc is None:
            self.wake()
            return
        announced.lost(news)
        if isinstance(exc, StoreError):
            log.error("events.store_failed", events=kinds, error=str(exc))
        else:
            log.error("events.store_failed", events=kinds, exc_info=exc)

    # -- reading -----------------------------------------------------------------------------------
    async def read(self, after: int, limit: int, *, scan_id: str | None = None,
                   owner: str | None = None) -> list[dict[str, Any]]:
        """Up to `limit` events after seq `after` (of one scan, or of one owner's scans), oldest first."""
        return await self.io.read(self.store.call, "cannot read events", stored.after, after, limit,
                                  scan_id=scan_id, owner=owner)

    async def last(self) -> int:
        """The newest event's seq (0: none yet)."""
        return await self.io.read(self.store.call, "cannot read events", stored.last_seq)

    # -- waiting -----------------------------------------------------------------------------------
    def wake(self) -> None:
        """Events were written (a scan's, or inside another write such as the inventory's
        merge): every waiter reads the store again."""
        self.written += 1
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        """The daemon is stopping, its last events written: waiters wake, and wait no more."""
        self.closed = True
        self.wake()

    async def wait(self, timeout: float, seen: int | None = None) -> bool:
        """Until the next wake, or `timeout` seconds; at once if the events are closed, or if
        there was a wake since `written` was `seen` (one during the caller's read). Whether it woke."""
        if self.closed or seen not in (None, self.written):
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return False
        finally:
            self._waiters.discard(waiter)
        return True
