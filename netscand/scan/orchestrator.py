"""The scan orchestrator of the control process: a queue of scans, a few running at once, each
driven by a ScanRun over the shared engine, with progress and results written to the store as
they arrive. Everything runs on the control process's event loop; engine results wake it through
the result rings' eventfds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

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

log = structlog.get_logger()

FLUSH_EVERY = 0.5  # seconds between progress and result writes of a running scan
DETECT_CONCURRENCY = 64  # connections at once for service detection, over all scans
RESTART_REASON = "netscand restarted while the scan was running"  # the daemon or its control process
TERMINAL = ("completed", "failed", "cancelled")
LIST_PAGE = 100


class ScanError(Exception):
    """A request the orchestrator refuses; the API turns it into problem+json."""

    def __init__(self, status: int, title: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.field = status, title, detail, field


@dataclass(frozen=True)
class Limits:
    rate: float
    retries: int
    max_running: int
    policy: Policy
    discovery: Discovery = Discovery()


def now_iso(t: datetime | None = None) -> str:
    return (t or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Active:
    def __init__(self, scan_id: str, run: ScanRun) -> None:
        self.id = scan_id
        self.run = run
        self.started = time.monotonic()
        self.profiling: asyncio.Task | None = None  # names and services, after the port scan


class Orchestrator:
    def __init__(self, store: Store, dispatcher: Dispatcher, limits: Limits) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.limits = limits
        self.queue: deque[tuple[str, ScanSpec, NetInfo]] = deque()
        self.detector = Detector(concurrency=DETECT_CONCURRENCY)
        self.active: dict[str, _Active] = {}
        # A scan's state the store refused to take (read-only, full): served from here and
        # written on a later tick, so no scan reads "running" for ever.
        self.unsaved: dict[str, dict] = {}
        self.stopping = False  # shutting down: nothing more is admitted
        self._ticker: asyncio.Task | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        for fd in self.dispatcher.fds():
            loop.add_reader(fd, self._wake)
        self._ticker = loop.create_task(self._tick_forever())

    def interrupted(self) -> None:
        """At start: scans the previous control process left running can't be resumed. If the
        store won't take that, the daemon still serves what it has and writes it later."""
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
        """A reload: scans started from now on get these limits; queued and running ones keep
        the plan they were given, and more may now run at once."""
        self.limits = limits
        self._admit()

    async def shutdown(self, reason: str) -> None:
        self.stopping = True  # or each cancelled scan would admit a queued one
        for scan_id in list(self.active):
            self._finish(scan_id, "cancelled", reason)
        while self.queue:
            scan_id, _, _ = self.queue.popleft()
            self._set_state(scan_id, "cancelled", error=reason, finished_at=now_iso())
        if self._ticker:
            self._ticker.cancel()

    # -- requests ------------------------------------------------------------------------------
    async def start(self, req: ScanRequest, owner: str | None, idempotency_key: str | None) -> tuple[dict, bool]:
        """Queue a scan; returns its status and whether it is new (False for a replayed key)."""
        if idempotency_key:
            earlier = self.store.scan_by_idempotency_key(owner, idempotency_key)
            if earlier:
                return self.status(earlier["id"]), False
        loop = asyncio.get_running_loop()
        try:
            # Hostnames are resolved once, here, in the resolver's own threads, with a deadline.
            targets = await parse_targets_async(req.target)
        except TargetError as exc:
            raise ScanError(422, "Invalid target", str(exc), "target") from None
        policy = self.limits.policy
        try:
            targets, skipped = policy.apply(targets)
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
            "ports_found": 0, "error": None, "idempotency_key": idempotency_key, "owner": owner,
        }
        try:
            self.store.create_scan(scan)
        except StoreError:
            # Two concurrent starts with one key: the first insert won while we resolved routes.
            earlier = idempotency_key and self.store.scan_by_idempotency_key(owner, idempotency_key)
            if not earlier:
                raise
            return self.status(earlier["id"]), False
        log.info("scan.state", scan_id=scan["id"], status="queued", target=req.target, profile=req.profile)
        self.queue.append((scan["id"], spec, net))
        self._admit()
        return self.status(scan["id"]), True

    def status(self, scan_id: str) -> dict:
        return _status_of(self._get(scan_id))

    def result(self, scan_id: str) -> dict:
        scan = self._get(scan_id)
        devices = self.store.result(scan_id)
        end = _parse(scan["finished_at"]) or datetime.now(timezone.utc)
        begin = _parse(scan["started_at"])
        return document(scan_id, scan["status"], devices, (end - begin).total_seconds() if begin else 0,
                        **{k: scan[k] for k in ("target", "profile", "site_id", "started_at", "finished_at")})

    async def stop(self, scan_id: str) -> dict:
        scan = self._get(scan_id)
        if scan["status"] in TERMINAL:
            raise ScanError(409, "Scan already finished", f"scan {scan_id} is {scan['status']}")
        if scan_id in self.active:
            self._finish(scan_id, "cancelled", None)
        else:
            self.queue = deque(q for q in self.queue if q[0] != scan_id)
            self._set_state(scan_id, "cancelled", finished_at=now_iso())
        return self.status(scan_id)

    def list(self, page: int, per_page: int, status: str | None, site_id: str | None) -> dict:
        rows, total = self.store.list_scans(page, per_page, status, site_id)
        return {"scans": [_status_of({**r, **self.unsaved.get(r["id"], {})}) for r in rows],
                "page": page, "per_page": per_page, "total": total}

    def _get(self, scan_id: str) -> dict:
        scan = self.store.get_scan(scan_id)
        if scan is None:
            raise ScanError(404, "Scan not found", f"no scan with id {scan_id}")
        return {**scan, **self.unsaved.get(scan_id, {})}

    # -- running ---------------------------------------------------------------------------------
    def _admit(self) -> None:
        while self.queue and len(self.active) < self.limits.max_running and not self.stopping:
            scan_id, spec, net = self.queue.popleft()
            run = ScanRun(spec, self.dispatcher, net)
            self.active[scan_id] = _Active(scan_id, run)
            self._set_state(scan_id, "running", started_at=now_iso())
            run.step()
            self._check_done(scan_id)

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
        if run.errors and not run.result.up_hosts:
            self._finish(scan_id, "failed", "; ".join(run.errors))
        elif run.spec.profiling and run.result.up_hosts:
            active.profiling = asyncio.get_running_loop().create_task(self._profile(active))
        else:
            self._finish(scan_id, "completed", None)

    async def _profile(self, active: _Active) -> None:
        """After the port scan: names and, where the profile connects, services, from this
        process (which holds no capability). Then the scan is finished."""
        await identify(active.run.result.up_hosts, self.detector, active.run.spec.detect_services)
        if self.active.get(active.id) is active:
            self._finish(active.id, "completed", None)

    def _finish(self, scan_id: str, status: str, error: str | None) -> None:
        active = self.active.pop(scan_id)
        if status == "cancelled":
            active.run.cancel()
            if active.profiling:
                active.profiling.cancel()
        fields = {**self._progress(active), "estimated_completion": None, "error": error,
                  "finished_at": now_iso()}
        if status == "completed":
            fields["progress_percent"] = 100
        try:
            self._save_hosts(scan_id, active.run.result.up_hosts, active.run, final=True)
        except StoreError as exc:
            status, fields["error"] = "failed", f"storage: {exc.reason}"
        self._set_state(scan_id, status, **fields)
        self._admit()

    def _flush(self, scan_id: str) -> None:
        active = self.active[scan_id]
        try:
            self._save_hosts(scan_id, active.run.result.take_dirty(), active.run, final=False)
            self.store.update_scan(scan_id, **self._progress(active))
        except StoreError as exc:
            # A store that refuses writes fails this scan, never the daemon.
            self.active.pop(scan_id).run.cancel()
            self._set_state(scan_id, "failed", error=f"storage: {exc.reason}", finished_at=now_iso(),
                            estimated_completion=None)
            self._admit()

    def _save_hosts(self, scan_id: str, hosts: list[Host], run: ScanRun, final: bool) -> None:
        """While running only open ports are saved: which closed and filtered ports are listed
        (rather than counted) is known once the host's counts are final, and rows stay."""
        for h in hosts:
            device = run.result.device(h, run.spec.profiling)
            ports = device["ports"] if final else [p for p in device["ports"] if p["state"] == "open"]
            extra = {k: device[k] for k in ("not_shown", "os_confidence", "hostnames") if k in device}
            if not final:
                extra.pop("not_shown", None)
            self.store.put_device(scan_id, device["ip"], mac=device["mac"], hostname=device["hostname"],
                                  vendor=device["vendor"],
                                  os_guess=device["os_guess"], extra=extra or None,
                                  timed_out=device.get("timed_out"))
            self.store.put_ports(scan_id, device["ip"], ports)

    def _save_unsaved(self) -> None:
        for scan_id, fields in list(self.unsaved.items()):
            try:
                self.store.update_scan(scan_id, **fields)
            except StoreError:
                return  # still refused: try again next tick
            del self.unsaved[scan_id]

    def _progress(self, active: _Active) -> dict:
        done, planned = active.run.progress()
        result = active.run.result
        up = result.up_hosts
        fields = {
            "progress_percent": min(99, 100 * done // planned) if planned else 0,
            "hosts_found": len(up),
            "ports_found": sum(len(h.open) for h in up),
            "estimated_completion": None,
        }
        elapsed = time.monotonic() - active.started
        if done and planned and elapsed > 1:
            remaining = (planned - done) * elapsed / done
            fields["estimated_completion"] = now_iso(datetime.now(timezone.utc) + timedelta(seconds=remaining))
        return fields

    def _set_state(self, scan_id: str, status: str, **fields: object) -> None:
        """Record a scan's new state; what the store refuses is kept in `unsaved`."""
        try:
            self.store.update_scan(scan_id, status=status, **fields)
            self.unsaved.pop(scan_id, None)
        except StoreError as exc:
            self.unsaved[scan_id] = {**self.unsaved.get(scan_id, {}), "status": status, **fields}
            log.error("scan.store_failed", scan_id=scan_id, error=str(exc))
        log.info("scan.state", scan_id=scan_id, status=status,
                 **{k: v for k, v in fields.items() if k in ("error", "hosts_found", "ports_found")})


def _status_of(scan: dict) -> dict:
    """The body of GET /api/v1/scans/{id}: the original's fields plus created, finished and error."""
    keys = ("id", "status", "target", "profile", "site_id", "progress_percent", "hosts_found",
            "ports_found", "created_at", "started_at", "estimated_completion", "finished_at", "error")
    return {**{k: scan[k] for k in keys}, "excluded_addresses": scan["options"].get("excluded_addresses", 0)}


def _parse(text: str | None) -> datetime | None:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) if text else None

