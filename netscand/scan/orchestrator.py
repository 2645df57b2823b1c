"""The scan orchestrator of the control process: a queue of scans, a few running at once, each
driven by a ScanRun over the shared engine, with progress and results written to the store as
they arrive. Scans run on the control process's event loop (engine results wake it through the
result rings' eventfds); the store is called only off it (StoreThreads): writes in batches on
one thread, in order, reads on others.

A scan belongs to its owner (a token's name, or `unix:<uid>`): callers that may see only their
own scans pass that owner as `viewer`, and another owner's scan is answered as if it did not
exist.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import hashlib
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from itertools import islice
from typing import Any

import orjson
import structlog

from netscand.netinfo import NetInfo
from netscand.profiling.services import Detector
from netscand.scan.dispatch import Dispatcher
from netscand.scan.identify import identify
from netscand.scan.policy import Policy, PolicyError
from netscand.scan.profiles import ScanRequest, resolve
from netscand.scan.result import Host, document
from netscand.scan.runner import Discovery, ScanRun, ScanSpec
from netscand.scan.targets import TargetError, parse_targets_async
from netscand.store import Store, StoreError
from netscand.store.scans import TERMINAL
from netscand.store.threads import StoreThreads

log = structlog.get_logger()

FLUSH_EVERY = 0.5  # seconds between progress and result writes of a running scan
# Devices one flush saves per scan (the rest stay dirty for the next): they are built on the
# event loop, so a flush must stay a few milliseconds however many hosts answered at once.
FLUSH_HOSTS = 512
SAVE_CHUNK = 512  # devices built per turn of the loop, and written per transaction, at a scan's end
DETECT_CONCURRENCY = 64  # connections at once for service detection, over all scans
RESTART_REASON = "netscand restarted while the scan was running"  # the daemon or its control process
LIST_PAGE = 100
QUEUE_RETRY_AFTER_S = 60  # a queued scan waits for a running one to end: minutes, not seconds
RETENTION_EVERY_S = 3600.0  # how often finished scans past daemon.retention_days are deleted
RETENTION_BATCH = 100  # scans looked up per round of deletion


class ScanError(Exception):
    """A request the orchestrator refuses; the API turns it into problem+json."""

    def __init__(self, status: int, title: str, detail: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.field = status, title, detail, field
        self.headers = headers or {}


@dataclass(frozen=True)
class Limits:
    rate: float
    retries: int
    max_running: int
    policy: Policy
    discovery: Discovery = Discovery()
    max_queued_per_owner: int = 16
    retention_days: int = 365  # 0: finished scans are kept for ever


def now_iso(t: datetime | None = None) -> str:
    return (t or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")


def request_digest(req: ScanRequest) -> str:
    """What an Idempotency-Key's replay is compared by: the validated request, so spellings the
    API takes as one (a site_id's case, null for a field left out) are one request."""
    return hashlib.sha256(orjson.dumps(dataclasses.asdict(req), option=orjson.OPT_SORT_KEYS)).hexdigest()


class _Active:
    def __init__(self, scan_id: str, run: ScanRun) -> None:
        self.id = scan_id
        self.run = run
        self.started = time.monotonic()
        self.profiling: asyncio.Task | None = None  # names and services, after the port scan
        self.flushing: asyncio.Future | None = None  # the last progress write, until it is done


@dataclass
class _Queued:
    id: str
    owner: str | None
    request: ScanRequest
    spec: ScanSpec
    net: NetInfo
    remote: bool  # asked for over HTTPS: the policy's socket-only blocks are not for it


class Orchestrator:
    def __init__(self, store: Store, dispatcher: Dispatcher, limits: Limits) -> None:
        self.store = store
        self.io = StoreThreads()
        self.dispatcher = dispatcher
        self.limits = limits
        self.queue: deque[_Queued] = deque()
        self.waiting: Counter[str | None] = Counter()  # per owner: scans queued or being started
        self.detector = Detector(concurrency=DETECT_CONCURRENCY)
        self.active: dict[str, _Active] = {}
        self.finishing: dict[str, asyncio.Task] = {}  # scans whose last results are being written
        # A scan's state the store has not confirmed: written but not yet done, or refused
        # (read-only, full). Served from here over what the store holds, retried every tick,
        # so no scan reads "running" for ever.
        self.unsaved: dict[str, dict] = {}
        self._saving: dict[str, asyncio.Future] = {}
        self.stopping = False  # shutting down: nothing more is admitted
        self._tasks: list[asyncio.Task] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        for fd in self.dispatcher.fds():
            loop.add_reader(fd, self._wake)
        self._tasks = [loop.create_task(self._tick_forever()), loop.create_task(self._expire_forever())]

    def interrupted(self) -> None:
        """At start, before serving: scans the previous control process left running can't be
        resumed. If the store won't take that, the daemon still serves what it has and writes
        it later."""
        try:
            failed = self.store.fail_interrupted(RESTART_REASON)
        except StoreError as exc:
            log.error("scan.store_failed", error=str(exc))
            failed = [s["id"] for status in ("running", "queued") for s in self._all_scans(status)]
            for scan_id in failed:
                self.unsaved[scan_id] = {"status": "failed", "error": RESTART_REASON, "finished_at": now_iso(),
                                         "estimated_completion": None}
        for scan_id in failed:
            log.info("scan.state", scan_id=scan_id, status="failed", error=RESTART_REASON)

    def _all_scans(self, status: str) -> list[dict]:
        scans: list[dict] = []
        while True:
            rows, total = self.store.list_scans(len(scans) // LIST_PAGE + 1, LIST_PAGE, status, None)
            scans += rows
            if not rows or len(scans) >= total:
                return scans

    def reconfigure(self, limits: Limits) -> None:
        """A reload: scans started from now on get these limits; queued ones are checked against
        the new policy when they start, running ones keep their plan; more may now run at once."""
        self.limits = limits
        self._admit()

    async def shutdown(self, reason: str) -> None:
        self.stopping = True  # or each cancelled scan would admit a queued one
        for scan_id in list(self.active):
            self._finish(scan_id, "cancelled", reason)
        while self.queue:
            queued = self.queue.popleft()
            self._set_state(queued.id, "cancelled", error=reason, finished_at=now_iso())
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self.finishing.values(), return_exceptions=True)
        await self.io.drain()  # every state above is written (or kept unsaved) before the store closes

    # -- requests ------------------------------------------------------------------------------
    async def start(self, req: ScanRequest, owner: str | None, idempotency_key: str | None,
                    remote: bool = False) -> tuple[dict, bool]:
        """Queue a scan; returns its status and whether it is new (False for a replayed key).
        `remote`: the request came over HTTPS (see Policy.apply)."""
        digest = request_digest(req) if idempotency_key else None
        if idempotency_key:
            earlier = await self.io.read(self.store.scan_by_idempotency_key, owner, idempotency_key)
            if earlier:
                return self._replay(earlier, digest), False
        with self._claim(owner) as claimed:
            scan, spec, net = await self._prepare(req, owner, remote)
            scan |= {"idempotency_key": idempotency_key, "request_digest": digest}
            try:
                created = await self.io.write(self.store.create_scan, scan)
            except StoreError:
                # Two concurrent starts with one key: the first insert won while we resolved routes.
                earlier = await self.io.read(self.store.scan_by_idempotency_key, owner,
                                             idempotency_key) if idempotency_key else None
                if not earlier:
                    raise
                return self._replay(earlier, digest), False
            log.info("scan.state", scan_id=scan["id"], status="queued", target=req.target, profile=req.profile)
            self.queue.append(_Queued(scan["id"], owner, req, spec, net, remote))
            claimed.keep()
        self._admit()
        return _status_of({**created, **self.unsaved.get(scan["id"], {})}), True

    async def _prepare(self, req: ScanRequest, owner: str | None, remote: bool) -> tuple[dict, ScanSpec, NetInfo]:
        """The new scan's row, its engine spec and the routes it will take, or a ScanError."""
        loop = asyncio.get_running_loop()
        try:
            # Hostnames are resolved once, here, in the resolver's own threads, with a deadline.
            targets = await parse_targets_async(req.target)
        except TargetError as exc:
            raise ScanError(422, "Invalid target", str(exc), "target") from None
        policy = self.limits.policy
        try:
            targets, skipped = policy.apply(targets, remote=remote)
            policy.check_rate(req.rate)
        except PolicyError as exc:
            log.warning("scan.refused", target=req.target, owner=owner, reason=exc.detail)
            raise ScanError(exc.status, exc.title, exc.detail, exc.field) from None
        spec = resolve(req, targets, min(self.limits.rate, policy.max_rate), self.limits.retries,
                       self.limits.discovery)
        try:
            # pyroute2 runs its own asyncio loop, which can't nest in this one: read routes in a thread.
            net = await loop.run_in_executor(None, NetInfo)
        except OSError as exc:
            raise ScanError(503, "Routes unavailable", f"cannot read the routing table: {exc}") from None
        scan = {
            "id": str(uuid.uuid4()), "status": "queued", "target": req.target,
            "profile": req.profile, "site_id": req.site_id,
            "options": req.options() | ({"excluded_addresses": skipped} if skipped else {}),
            "created_at": now_iso(), "started_at": None, "finished_at": None,
            "estimated_completion": None, "progress_percent": 0, "hosts_found": 0,
            "ports_found": 0, "error": None, "owner": owner,
        }
        return scan, spec, net

    def _replay(self, earlier: dict, digest: str | None) -> dict:
        # Scans stored before digests were kept have none: their key alone decides, as it did.
        if earlier["request_digest"] is not None and earlier["request_digest"] != digest:
            raise ScanError(422, "Idempotency-Key reused", "the Idempotency-Key was reused with a different "
                            f"request: it started scan {earlier['id']} with another body", "Idempotency-Key")
        return _status_of({**earlier, **self.unsaved.get(earlier["id"], {})})

    @contextmanager
    def _claim(self, owner: str | None) -> Iterator[_Claim]:
        """One of the owner's places in the queue, taken while the scan is being started (so
        a burst of concurrent starts can't overshoot) and kept while it is queued."""
        if self.waiting[owner] >= self.limits.max_queued_per_owner:
            raise ScanError(429, "Too many queued scans", f"{owner or 'this client'} already has "
                            f"{self.limits.max_queued_per_owner} scans queued or starting; retry once one "
                            "has started", headers={"Retry-After": str(QUEUE_RETRY_AFTER_S)})
        self.waiting[owner] += 1
        claim = _Claim()
        try:
            yield claim
        finally:
            if not claim.kept:
                self._unclaim(owner)

    def _unclaim(self, owner: str | None) -> None:
        self.waiting[owner] -= 1
        if self.waiting[owner] <= 0:
            del self.waiting[owner]

    async def status(self, scan_id: str, viewer: str | None) -> dict:
        return _status_of(await self._get(scan_id, viewer))

    async def result(self, scan_id: str, viewer: str | None, page: int, per_page: int) -> dict:
        """One page of the result: `devices_found` and `open_ports_total` count the whole scan."""
        scan = await self._get(scan_id, viewer)
        devices, (found, open_total) = await self.io.read(self._result_page, scan_id, page, per_page)
        end = _parse(scan["finished_at"]) or datetime.now(timezone.utc)
        begin = _parse(scan["started_at"])
        doc = document(scan_id, scan["status"], devices, (end - begin).total_seconds() if begin else 0,
                       **{k: scan[k] for k in ("target", "profile", "site_id", "started_at", "finished_at")})
        return doc | {"devices_found": found, "open_ports_total": open_total, "page": page, "per_page": per_page,
                      "devices": devices}

    def _result_page(self, scan_id: str, page: int, per_page: int) -> tuple[list[dict], tuple[int, int]]:
        return self.store.result_page(scan_id, page, per_page), self.store.counts(scan_id)

    async def stop(self, scan_id: str, viewer: str | None) -> dict:
        scan = await self._get(scan_id, viewer)
        if scan_id in self.finishing:  # it ended while the request came: say how
            await asyncio.shield(self.finishing[scan_id])
            scan = await self._get(scan_id, viewer)
        if scan["status"] in TERMINAL:
            raise ScanError(409, "Scan already finished", f"scan {scan_id} is {scan['status']}")
        if scan_id in self.active:
            self._finish(scan_id, "cancelled", None)
            await asyncio.shield(self.finishing[scan_id])
        else:
            self._unqueue(scan_id)
            self._set_state(scan_id, "cancelled", finished_at=now_iso())
        return await self.status(scan_id, viewer)

    async def delete(self, scan_id: str, viewer: str | None) -> None:
        """Delete a finished scan and its results; a queued or running one must be stopped first."""
        scan = await self._get(scan_id, viewer)
        if scan_id in self.finishing:
            await asyncio.shield(self.finishing[scan_id])
            scan = await self._get(scan_id, viewer)
        if scan["status"] not in TERMINAL:
            raise ScanError(409, "Scan not finished", f"scan {scan_id} is {scan['status']}; stop it first")
        if scan_id in self.unsaved and scan_id not in self._saving:
            self._write_state(scan_id, self.unsaved[scan_id])  # the store must know it finished
        if not await self._delete(scan_id):
            raise ScanError(404, "Scan not found", f"no scan with id {scan_id}")  # deleted meanwhile
        self.unsaved.pop(scan_id, None)
        log.info("scan.deleted", scan_id=scan_id)

    async def list(self, page: int, per_page: int, status: str | None, site_id: str | None,
                   viewer: str | None) -> dict:
        before = dict(self.unsaved)
        rows, total = await self.io.read(self.store.list_scans, page, per_page, status, site_id, viewer)
        return {"scans": [_status_of({**r, **self._overlay(r["id"], before)}) for r in rows],
                "page": page, "per_page": per_page, "total": total}

    async def _get(self, scan_id: str, viewer: str | None) -> dict:
        before = self.unsaved.get(scan_id)
        scan = await self.io.read(self.store.get_scan, scan_id)
        if scan is None or (viewer is not None and scan["owner"] != viewer):
            # Another owner's scan is not there for this caller: not even its existence shows.
            raise ScanError(404, "Scan not found", f"no scan with id {scan_id}")
        return {**scan, **self._overlay(scan_id, {scan_id: before} if before else {})}

    def _overlay(self, scan_id: str, before: dict[str, dict]) -> dict:
        """What the store may not show yet of a scan's state. Taken both before a read (a write
        confirmed meanwhile may have landed after the read) and after it (the newest)."""
        return self.unsaved.get(scan_id) or before.get(scan_id) or {}

    def _unqueue(self, scan_id: str) -> None:
        for queued in self.queue:
            if queued.id == scan_id:
                self.queue.remove(queued)
                self._unclaim(queued.owner)
                return

    # -- running ---------------------------------------------------------------------------------
    def _admit(self) -> None:
        while self.queue and len(self.active) < self.limits.max_running and not self.stopping:
            queued = self.queue.popleft()
            self._unclaim(queued.owner)
            spec = self._recheck(queued)
            if spec is None:
                continue
            run = ScanRun(spec, self.dispatcher, queued.net)
            self.active[queued.id] = _Active(queued.id, run)
            self._set_state(queued.id, "running", started_at=now_iso())
            run.step()
            self._check_done(queued.id)

    def _recheck(self, queued: _Queued) -> ScanSpec | None:
        """The queued scan's spec under the policy of now (a reload may have narrowed it since it
        was accepted), or None when the policy now refuses it: it fails before a packet is sent."""
        policy = self.limits.policy
        try:
            targets, _ = policy.apply(queued.spec.targets, remote=queued.remote)
            policy.check_rate(queued.request.rate)
        except PolicyError as exc:
            error = f"the target policy changed while the scan was queued: {exc.detail}"
            log.warning("scan.refused", scan_id=queued.id, owner=queued.owner, reason=exc.detail)
            self._set_state(queued.id, "failed", error=error, finished_at=now_iso())
            return None
        return dataclasses.replace(queued.spec, targets=targets, rate=min(queued.spec.rate, policy.max_rate))

    def _wake(self) -> None:
        self.dispatcher.poll()
        for scan_id in list(self.active):
            self.active[scan_id].run.step()
            self._check_done(scan_id)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            try:
                self._wake()
                for scan_id in list(self.active):
                    self._flush(scan_id)
                self._save_unsaved()
            except Exception:
                log.exception("orchestrator.tick_failed")

    def _check_done(self, scan_id: str) -> None:
        active = self.active.get(scan_id)
        if active is None or not active.run.done or active.profiling:
            return
        run = active.run
        if run.failure:
            self._finish(scan_id, "failed", run.failure)
        elif run.errors and not run.result.up_count:
            self._finish(scan_id, "failed", "; ".join(run.errors))
        elif run.spec.profiling and run.result.up_count:
            active.profiling = asyncio.get_running_loop().create_task(self._profile(active))
        else:
            self._finish(scan_id, "completed", None)

    async def _profile(self, active: _Active) -> None:
        """After the port scan: names and, where the profile connects, services, from this
        process (which holds no capability). Then the scan is finished."""
        spec = active.run.spec
        await identify(active.run.result.up_hosts, self.detector, spec.detect_services, spec.host_timeout_s)
        if self.active.get(active.id) is active:
            self._finish(active.id, "completed", None)

    def _finish(self, scan_id: str, status: str, error: str | None) -> None:
        """The scan ends: its slot frees now; its last results are written, then its state."""
        active = self.active.pop(scan_id)
        if status == "cancelled":
            active.run.cancel()
            if active.profiling:
                active.profiling.cancel()
        task = asyncio.get_running_loop().create_task(self._finalize(active, status, error))
        self.finishing[scan_id] = task
        task.add_done_callback(lambda _: self.finishing.pop(scan_id, None))
        self._admit()

    async def _finalize(self, active: _Active, status: str, error: str | None) -> None:
        fields: dict[str, Any] = {**self._progress(active), "estimated_completion": None, "error": error,
                                  "finished_at": now_iso()}
        if status == "completed":
            fields["progress_percent"] = 100
        try:
            # A chunk of hosts per turn of the loop, in no order (the store sorts): neither
            # sorting nor building every device at once may hold the loop. The run is over, so
            # no host is added meanwhile.
            hosts = (h for h in active.run.result.hosts.values() if h.up)
            while chunk := list(islice(hosts, SAVE_CHUNK)):
                devices = [self._save_hosts(h, active.run, final=True) for h in chunk]
                await self.io.write(self.store.put_devices, active.id, devices)
        except StoreError as exc:
            status, fields["error"] = "failed", f"storage: {exc.reason}"
        except Exception:
            # A bug, but the scan must still end rather than read "running" for ever.
            log.exception("orchestrator.save_failed", scan_id=active.id)
            status, fields["error"] = "failed", "internal error saving the results; the daemon's log has the details"
        self._set_state(active.id, status, **fields)

    def _flush(self, scan_id: str) -> None:
        active = self.active[scan_id]
        if active.flushing is not None and not active.flushing.done():
            return  # the writer is behind: what changed stays dirty for a later flush
        devices = [self._save_hosts(h, active.run, final=False) for h in active.run.result.take_dirty(FLUSH_HOSTS)]
        active.flushing = self.io.write(self._write_progress, scan_id, devices, self._progress(active))
        active.flushing.add_done_callback(partial(self._flushed, active))

    def _write_progress(self, scan_id: str, devices: builtins.list[dict], progress: dict) -> None:
        """On the writer thread: one flush of a running scan."""
        if devices:
            self.store.put_devices(scan_id, devices)
        self.store.update_scan(scan_id, **progress)

    def _flushed(self, active: _Active, done: asyncio.Future) -> None:
        exc = None if done.cancelled() else done.exception()
        if exc is None or self.active.get(active.id) is not active:
            return  # written; or the scan has ended meanwhile, and its last write says how
        if not isinstance(exc, StoreError):
            log.error("orchestrator.flush_failed", scan_id=active.id, exc_info=exc)
            return
        # A store that refuses writes fails this scan, never the daemon.
        self.active.pop(active.id).run.cancel()
        if active.profiling:
            active.profiling.cancel()
        self._set_state(active.id, "failed", error=f"storage: {exc.reason}", finished_at=now_iso(),
                        estimated_completion=None)
        self._admit()

    @staticmethod
    def _save_hosts(h: Host, run: ScanRun, final: bool) -> dict:
        """A host as Store.put_devices takes it. While running only open ports are saved: which
        closed and filtered ports are listed (rather than counted) is known once the host's
        counts are final, and rows stay."""
        device = run.result.device(h, run.spec.profiling)
        ports = device["ports"] if final else [p for p in device["ports"] if p["state"] == "open"]
        extra = {k: device[k] for k in ("not_shown", "os_confidence", "hostnames", "tarpit") if k in device}
        if not final:
            extra.pop("not_shown", None)
        return {"ip": device["ip"], "mac": device["mac"], "hostname": device["hostname"], "vendor": device["vendor"],
                "os_guess": device["os_guess"], "extra": extra or None, "timed_out": device.get("timed_out"),
                "ports": ports}

    def _save_unsaved(self) -> None:
        for scan_id, fields in list(self.unsaved.items()):
            if scan_id not in self._saving:
                self._write_state(scan_id, fields)

    def _progress(self, active: _Active) -> dict:
        done, planned = active.run.progress()
        result = active.run.result
        fields: dict[str, int | str | None] = {
            "progress_percent": min(99, 100 * done // planned) if planned else 0,
            "hosts_found": result.up_count,
            "ports_found": result.open_ports,
            "estimated_completion": None,
        }
        elapsed = time.monotonic() - active.started
        if done and planned and elapsed > 1:
            remaining = (planned - done) * elapsed / done
            fields["estimated_completion"] = now_iso(datetime.now(timezone.utc) + timedelta(seconds=remaining))
        return fields

    def _set_state(self, scan_id: str, status: str, **fields: object) -> None:
        """Record a scan's new state: served from `unsaved` at once, written in turn."""
        self.unsaved[scan_id] = {**self.unsaved.get(scan_id, {}), "status": status, **fields}
        self._write_state(scan_id, self.unsaved[scan_id])
        log.info("scan.state", scan_id=scan_id, status=status,
                 **{k: v for k, v in fields.items() if k in ("error", "hosts_found", "ports_found")})

    def _write_state(self, scan_id: str, fields: dict) -> None:
        written = self.io.write(self.store.update_scan, scan_id, **fields)
        self._saving[scan_id] = written
        written.add_done_callback(partial(self._state_written, scan_id, fields))

    def _state_written(self, scan_id: str, fields: dict, written: asyncio.Future) -> None:
        if self._saving.get(scan_id) is written:
            del self._saving[scan_id]
        exc = None if written.cancelled() else written.exception()
        if exc is None or isinstance(exc, KeyError):  # KeyError: the scan was deleted meanwhile
            if self.unsaved.get(scan_id) is fields:  # and not changed again since
                del self.unsaved[scan_id]
        elif isinstance(exc, StoreError):
            log.error("scan.store_failed", scan_id=scan_id, error=str(exc))  # kept; the next tick retries
        else:
            log.error("scan.store_failed", scan_id=scan_id, exc_info=exc)

    # -- retention -------------------------------------------------------------------------------
    async def _delete(self, scan_id: str) -> bool:
        """Delete a finished scan, its results one chunk a write: the writer thread takes other
        writes in between (running scans' results, new scans), however large the scan."""
        while await self.io.write(self.store.delete_results, scan_id):
            pass
        return await self.io.write(self.store.delete_scan, scan_id)

    async def _expire_forever(self) -> None:
        while True:
            try:
                await self.expire()
            except StoreError as exc:
                log.error("scan.retention_failed", error=str(exc))  # the next round tries again
            except Exception:
                log.exception("scan.retention_failed")
            await asyncio.sleep(RETENTION_EVERY_S)

    async def expire(self) -> int:
        """Delete finished scans that ended more than retention_days ago; how many went. Each
        chunk of a deletion is a write of its own (_delete)."""
        days = self.limits.retention_days
        if not days:
            return 0
        cutoff = now_iso(datetime.now(timezone.utc) - timedelta(days=days))
        deleted = 0
        while ids := await self.io.read(self.store.finished_before, cutoff, RETENTION_BATCH):
            gone = [scan_id for scan_id in ids if await self._delete(scan_id)]
            for scan_id in gone:
                self.unsaved.pop(scan_id, None)
            deleted += len(gone)
            if not gone:
                break  # nothing could go (deleted by a client meanwhile): the next round sees
        if deleted:
            log.info("scan.expired", scans=deleted, retention_days=days)
        return deleted


class _Claim:
    """A place in an owner's queue, given back when the start fails unless kept."""

    kept = False

    def keep(self) -> None:
        self.kept = True


def _status_of(scan: dict) -> dict:
    """The body of GET /api/v1/scans/{id}: the original's fields plus created, finished and error."""
    keys = ("id", "status", "target", "profile", "site_id", "progress_percent", "hosts_found",
            "ports_found", "created_at", "started_at", "estimated_completion", "finished_at", "error")
    return {**{k: scan[k] for k in keys}, "excluded_addresses": scan["options"].get("excluded_addresses", 0)}


def _parse(text: str | None) -> datetime | None:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) if text else None
