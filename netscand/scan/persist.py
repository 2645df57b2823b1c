"""Persistence: a scan's writes, through the store's threads (StoreThreads: one writer, in order,
off the event loop), and the reads that must see what is not written yet.

A scan's state the store has not confirmed (written but not yet done, or refused: read-only,
full) is kept in `unsaved`, served over what the store holds and written again every tick, so no
scan reads "running" for ever; the `scan.state` events of those states go in the same writes.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Iterator
from functools import partial
from itertools import islice

import structlog

from netscand.scan.events import Events
from netscand.scan.result import Host, ScanResult
from netscand.statuses import FINISHED
from netscand.store import Store, StoreError, checkpoints, inventory, results
from netscand.store import events as stored_events
from netscand.store.clock import utc_now
from netscand.store.threads import StoreThreads

log = structlog.get_logger()

SAVE_CHUNK = 512  # devices built per turn of the loop, and written per transaction, at a scan's end
LIST_PAGE = 100
STATE_LOGGED = ("error", "hosts_found", "ports_found")
# Device fields known once the host's counts are final: saved with its closed and filtered ports.
FINAL_FIELDS = ("not_shown", "not_shown_udp", "udp_icmp_limited", "coverage")


def device_row(result: ScanResult, h: Host, profiling: bool, final: bool) -> dict:
    """A host as Store.put_devices takes it. While running only open ports are saved: which
    closed and filtered ports are listed (rather than counted) is known once the host's counts
    are final, and rows stay."""
    device = result.device(h, profiling)
    ports = device["ports"] if final else [p for p in device["ports"] if p["state"] == "open"]
    kept = (*(FINAL_FIELDS if final else ()), "os_confidence", "hostnames", "tarpit", "host_keys", "certificates")
    extra = {k: device[k] for k in kept if k in device}
    return {"ip": device["ip"], "mac": device["mac"], "hostname": device["hostname"], "vendor": device["vendor"],
            "os_guess": device["os_guess"], "extra": extra or None, "timed_out": device.get("timed_out"),
            "ports": ports}


class Persist:
    def __init__(self, store: Store, io: StoreThreads, events: Events) -> None:
        self.store = store
        self.io = io
        self.events = events  # the orchestrator's, which its streams wait on
        self.unsaved: dict[str, dict] = {}  # scan id -> state fields the store has not confirmed
        self.untold: dict[str, list[dict]] = {}  # scan id -> its states whose events are not written yet
        self._saving: dict[str, asyncio.Future] = {}  # scan id -> its state write under way

    # -- state -----------------------------------------------------------------------------------
    def set_state(self, scan_id: str, status: str, **fields: object) -> None:
        """Record a scan's new state: served from `unsaved` at once, written in turn."""
        self.unsaved[scan_id] = {**self.unsaved.get(scan_id, {}), "status": status, **fields}
        self.untold.setdefault(scan_id, []).append({"status": status, "error": self.unsaved[scan_id].get("error")})
        self._write_state(scan_id, self.unsaved[scan_id])
        if status in FINISHED:
            self.events.ended(scan_id)
        log.info("scan.state", scan_id=scan_id, status=status, **{k: v for k, v in fields.items() if k in STATE_LOGGED})

    def retry(self, scan_id: str) -> None:
        """Write again the scan's unconfirmed state, unless a write of it is under way."""
        fields = self.unsaved.get(scan_id)
        if fields is not None and scan_id not in self._saving:
            self._write_state(scan_id, fields)

    def retry_all(self) -> None:
        for scan_id in list(self.unsaved):
            self.retry(scan_id)

    def _write_state(self, scan_id: str, fields: dict) -> None:
        states = list(self.untold.get(scan_id, ()))
        written = self.io.write(self.store.call, f"cannot update scan {scan_id}", stored_events.update_scan,
                                scan_id, fields, states)
        self._saving[scan_id] = written
        written.add_done_callback(partial(self._state_written, scan_id, fields, states))

    def _state_written(self, scan_id: str, fields: dict, states: builtins.list[dict], written: asyncio.Future) -> None:
        if self._saving.get(scan_id) is written:
            del self._saving[scan_id]
        exc = None if written.cancelled() else written.exception()
        if exc is None or isinstance(exc, KeyError):  # KeyError: the scan was deleted meanwhile
            if self.unsaved.get(scan_id) is fields:  # and not changed again since
                del self.unsaved[scan_id]
            # By identity: a state set meanwhile is still to tell, even one with the same status.
            untold = [s for s in self.untold.pop(scan_id, []) if not any(s is w for w in states)]
            if untold:
                self.untold[scan_id] = untold
            self.events.wake()
        elif isinstance(exc, StoreError):
            log.error("scan.store_failed", scan_id=scan_id, error=str(exc))  # kept; the next tick retries
        else:
            log.error("scan.store_failed", scan_id=scan_id, exc_info=exc)

    def forget(self, scan_id: str) -> None:
        """The scan was deleted: nothing of it is left to write."""
        self.unsaved.pop(scan_id, None)
        self.untold.pop(scan_id, None)

    def interrupted(self, reason: str, keep: builtins.list[str]) -> bool:
        """At start, before serving: scans the previous control process left running that are
        not to be resumed (`keep`) fail; whether the store took that, and the count of the
        restart in the kept ones' checkpoints. If it won't, every one fails (a scan can't go on
        without writing its checkpoint), and the daemon still serves what it has and writes it
        later."""
        try:
            failed = self.store.call("cannot mark interrupted scans failed", stored_events.fail_active, reason, keep)
            self.store.call("cannot resume scans", checkpoints.resuming, keep)
        except StoreError as exc:
            log.error("scan.store_failed", error=str(exc))
            failed = [s["id"] for status in ("running", "queued") for s in self._all_scans(status)]
            for scan_id in failed:
                self.unsaved[scan_id] = {"status": "failed", "error": reason, "finished_at": utc_now(),
                                         "estimated_completion": None}
                self.untold[scan_id] = [{"status": "failed", "error": reason}]
        for scan_id in failed:
            log.info("scan.state", scan_id=scan_id, status="failed", error=reason)
        return not any(scan_id in failed for scan_id in keep)

    def queued(self) -> builtins.list[dict]:
        """At start: the scans the previous control process left queued, oldest first (blocking:
        before serving)."""
        try:
            rows = self._all_scans("queued")
        except StoreError as exc:
            log.error("scan.store_failed", error=str(exc))
            return []
        return sorted(rows, key=lambda r: (r["created_at"], r["id"]))

    # -- checkpoints (scan/resume.py) -----------------------------------------------------------
    def resumable(self) -> builtins.list[tuple[str, checkpoints.Stored]]:
        """At start: the running scans that left a checkpoint, with it (blocking: before serving)."""
        try:
            ids = self.store.call("cannot read the scans to resume", checkpoints.resumable)
            stored = [(i, self.store.call(f"cannot read scan {i}'s checkpoint", checkpoints.load, i)) for i in ids]
        except StoreError as exc:
            log.error("scan.store_failed", error=str(exc))
            return []
        return [(i, s) for i, s in stored if s is not None]

    def begin_checkpoint(self, scan_id: str, spec: str, remote: bool, rate: float | None) -> asyncio.Future:
        return self.io.write(self.store.call, f"cannot save scan {scan_id}'s checkpoint", checkpoints.begin,
                             scan_id, spec, remote, rate)

    def checkpoint(self, scan_id: str, delta: checkpoints.Delta) -> asyncio.Future:
        return self.io.write(self.store.call, f"cannot save scan {scan_id}'s checkpoint", checkpoints.save,
                             scan_id, delta)

    def drop_checkpoint(self, scan_id: str) -> None:
        """The scan will not resume: its checkpoint's rows go, behind the writes queued so far
        (its final state first: a kill between the two leaves a finished scan with rows that
        nothing reads, not a finished scan's work read as interrupted)."""
        dropped = self.io.write(self.store.call, f"cannot drop scan {scan_id}'s checkpoint", checkpoints.drop,
                                scan_id)
        dropped.add_done_callback(partial(_dropped, scan_id))

    def _all_scans(self, status: str) -> builtins.list[dict]:
        scans: list[dict] = []
        while True:
            rows, total = self.store.list_scans(len(scans) // LIST_PAGE + 1, LIST_PAGE, status, None)
            scans += rows
            if not rows or len(scans) >= total:
                return scans

    # -- reads through what is not written yet ---------------------------------------------------
    def _overlay(self, scan_id: str, before: dict[str, dict]) -> dict:
        """What the store may not show yet of a scan's state. Taken both before a read (a write
        confirmed meanwhile may have landed after the read) and after it (the newest)."""
        return self.unsaved.get(scan_id) or before.get(scan_id) or {}

    def current(self, row: dict) -> dict:
        """A row the store just gave, with what it does not show yet."""
        return {**row, **self._overlay(row["id"], {})}

    async def scan(self, scan_id: str) -> dict | None:
        before = {scan_id: self.unsaved[scan_id]} if scan_id in self.unsaved else {}
        scan = await self.io.read(self.store.get_scan, scan_id)
        return None if scan is None else {**scan, **self._overlay(scan_id, before)}

    async def scans(self, page: int, per_page: int, status: str | None, site_id: str | None,
                    viewer: str | None) -> tuple[builtins.list[dict], int]:
        before = dict(self.unsaved)
        rows, total = await self.io.read(self.store.list_scans, page, per_page, status, site_id, viewer)
        return [{**r, **self._overlay(r["id"], before)} for r in rows], total

    async def result_page(self, scan_id: str, page: int, per_page: int) -> tuple[builtins.list[dict], tuple[int, int]]:
        """One page of a scan's devices, and (devices, open ports) of the whole scan, in one read."""
        return await self.io.read(self._result_page, scan_id, page, per_page)

    def _result_page(self, scan_id: str, page: int, per_page: int) -> tuple[builtins.list[dict], tuple[int, int]]:
        return self.store.result_page(scan_id, page, per_page), self.store.counts(scan_id)

    def result_pages(self, scan_id: str, size: int) -> Iterator[builtins.list[dict]]:
        """The scan's devices a page at a time, by address; blocking, each page read as it is taken
        (an export takes them on the store's reader threads), after the last address given: a
        device a running scan finds meanwhile shifts no page (one behind the pages read is simply
        not in them)."""
        after: str | None = None
        while True:
            devices = self.store.call(f"cannot read the result of scan {scan_id}", results.page_after,
                                      scan_id, after, size)
            yield devices
            if len(devices) < size:
                return
            after = devices[-1]["ip"]

    async def addresses(self, scan_id: str) -> int | None:
        """How many addresses the scan probed (its targets less the policy's exclusions), as a
        completed scan's merge kept what it covered; None for a scan that kept none."""
        covered = await self.io.read(self.store.call, f"cannot read what scan {scan_id} covered",
                                     inventory.covered_of, scan_id)
        return None if covered is None else sum(hi - lo + 1 for lo, hi in covered.ranges)

    # -- results ---------------------------------------------------------------------------------
    def flush(self, scan_id: str, devices: builtins.list[dict], progress: dict) -> asyncio.Future:
        """One flush of a running scan: its changed devices, then its progress."""
        written = self.io.write(self._write_progress, scan_id, devices, progress)
        self.events.found(scan_id, devices, progress)
        return written

    def _write_progress(self, scan_id: str, devices: builtins.list[dict], progress: dict) -> None:
        """On the writer thread."""
        if devices:
            self.store.put_devices(scan_id, devices)
        self.store.update_scan(scan_id, **progress)

    async def save_results(self, scan_id: str, result: ScanResult, profiling: bool) -> None:
        """A finished scan's devices, final. A chunk of hosts per turn of the loop, in no order
        (the store sorts): neither sorting nor building every device at once may hold the loop.
        The run is over, so no host is added meanwhile."""
        hosts = (h for h in result.hosts.values() if h.up)
        while chunk := list(islice(hosts, SAVE_CHUNK)):
            devices = [device_row(result, h, profiling, final=True) for h in chunk]
            await self.io.write(self.store.put_devices, scan_id, devices)
            self.events.found(scan_id, devices)  # hosts and ports no flush told of

    async def cve_devices(self, scan_id: str) -> builtins.list[dict]:
        """A finished scan's devices that CVE matching concerns, with only their ports that it
        concerns (a CPE, or an earlier match's CVE fields)."""
        return await self.io.read(self.store.cve_devices, scan_id)

    async def save_cves(self, scan_id: str, devices: builtins.list[dict], cve: dict) -> None:
        """A CVE match's devices and the scan's `cve` (scan/cves.py), replacing the earlier ones."""
        await self.io.write(self.store.put_cves, scan_id, devices, cve)


def _dropped(scan_id: str, done: asyncio.Future) -> None:
    exc = None if done.cancelled() else done.exception()
    if exc is not None:  # the rows stay, read by nothing (only a running scan resumes); deleting the scan takes them
        log.error("scan.checkpoint_drop_failed", scan_id=scan_id, error=str(exc))
