"""The scan orchestrator of the control process: what the API and the daemon call to start,
read, stop and delete scans. A facade over its parts, each with one job:

- admission.py: whether a request becomes a queued scan (idempotency, per-owner places, targets,
  policy, routes); it writes the new scan's queued row (store.create_scan);
- queue.py: the scans waiting for a place to run;
- live.py: the scans running now, driven by ScanRuns over the shared engine on this event loop;
- stages.py: the profiling stage after a scan's sweep;
- cves.py: CVE matching after profiling, and again of a stored result on request (rematch);
- persist.py: a scan's state and results as it runs and ends (off the event loop, in order),
  and the reads that must see what is not written yet;
- retention.py: deleting finished scans, on request and past the retention age.

A scan belongs to its owner (a token's name, or `unix:<uid>`): callers that may see only their
own scans pass that owner as `viewer`, and another owner's scan is answered as if it did not
exist.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import structlog

from netscand.netinfo import NetInfo
from netscand.scan.admission import Admission, Claims
from netscand.scan.cves import CveMatching
from netscand.scan.dispatch import Dispatcher
from netscand.scan.errors import ScanError, not_found
from netscand.scan.events import Events
from netscand.scan.health import EngineHealth
from netscand.scan.limits import CurrentLimits, Limits
from netscand.scan.live import Live, Running
from netscand.scan.persist import Persist
from netscand.scan.policy import Policy, PolicyError
from netscand.scan.profiles import ScanRequest
from netscand.scan.queue import ScanQueue
from netscand.scan.result import document
from netscand.scan.resume import Checkpoint, spec_from_json
from netscand.scan.retention import Retention
from netscand.scan.runner import ScanRun
from netscand.scan.schedules import Scheduler
from netscand.scan.webhooks import WebhookSender
from netscand.statuses import FINISHED
from netscand.store import Store
from netscand.store.checkpoints import Stored
from netscand.store.clock import parse, utc_now
from netscand.store.threads import StoreThreads

log = structlog.get_logger()

RESTART_REASON = "netscand restarted while the scan was running"  # the daemon or its control process
STATUS_KEYS = ("id", "status", "target", "profile", "site_id", "progress_percent", "hosts_found",
               "ports_found", "created_at", "started_at", "estimated_completion", "finished_at", "error")


class Orchestrator:
    def __init__(self, store: Store, dispatcher: Dispatcher, limits: Limits, cves: CveMatching) -> None:
        self.io = StoreThreads()
        self.dispatcher = dispatcher
        self.health = EngineHealth(dispatcher)  # the one view of the engine the API is given
        self.limits = CurrentLimits(limits)
        claims = Claims()
        self.events = Events(store, self.io)
        self.admission = Admission(store, self.io, claims, self.limits, self.events)
        self.queue = ScanQueue(claims)
        self.persist = Persist(store, self.io, self.events)
        self.webhooks = WebhookSender(store, self.io, self.events, self.limits)
        self.retention = Retention(store, self.io, self.persist, self.limits)
        self.cves = cves
        self.live = Live(dispatcher, self.persist, self.queue, self.limits, cves)
        self.schedules = Scheduler(store, self.io, self.start)
        self._tasks: list[asyncio.Task] = []

    @property
    def active(self) -> dict[str, Running]:
        return self.live.running

    # -- lifecycle ---------------------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        for fd in self.dispatcher.fds():
            loop.add_reader(fd, self.live.wake)
        self._tasks = [loop.create_task(self.live.tick_forever()),
                       loop.create_task(self.retention.expire_forever()),
                       loop.create_task(self.webhooks.send_forever()),
                       loop.create_task(self.schedules.run_forever())]

    async def interrupted(self) -> None:
        """At start, before serving: scans left running by the previous control process go on
        from their checkpoint (scan/resume.py), and those it left queued are queued again in
        their order (Admission.requeue); each fails with why it cannot."""
        stored = self.persist.resumable()
        queued = self.persist.queued()
        if not self.persist.interrupted(RESTART_REASON, [scan_id for scan_id, _ in stored] + [r["id"] for r in queued]):
            return
        await self._resume(stored)
        for row in queued:
            try:
                self.queue.push(await self.admission.requeue(row))
            except ScanError as exc:
                self._not_resumed(row["id"], exc.detail)
                continue
            except Exception:  # a row this version cannot read must not keep the daemon from booting
                log.exception("scan.request_unreadable", scan_id=row["id"])
                self._not_resumed(row["id"], "its stored request is unreadable")
                continue
            log.info("scan.requeued", scan_id=row["id"])
        self.live.admit()

    async def _resume(self, stored: list[tuple[str, Stored]]) -> None:
        if not stored:
            return
        try:
            # pyroute2 runs an event loop of its own, which can't nest in this one.
            net = await asyncio.get_running_loop().run_in_executor(None, NetInfo)
        except OSError as exc:
            for scan_id, _ in stored:
                self._not_resumed(scan_id, f"cannot read the routing table: {exc}")
            return
        for scan_id, checkpoint in stored:
            try:
                run = _resumed(checkpoint, self.limits.now.policy, self.dispatcher, net)
            except PolicyError as exc:
                self._not_resumed(scan_id, f"the policy changed: {exc.detail}")
                continue
            except Exception:  # a checkpoint this version cannot read must not keep the daemon from booting
                log.exception("scan.checkpoint_unreadable", scan_id=scan_id)
                self._not_resumed(scan_id, "its checkpoint is unreadable")
                continue
            log.info("scan.resumed", scan_id=scan_id)
            self.live.resume(scan_id, run)

    def _not_resumed(self, scan_id: str, why: str) -> None:
        error = f"cannot resume after a restart: {why}"
        log.warning("scan.not_resumed", scan_id=scan_id, reason=error)
        self.persist.set_state(scan_id, "failed", finished_at=utc_now(), estimated_completion=None, error=error)
        self.persist.drop_checkpoint(scan_id)

    def reconfigure(self, limits: Limits) -> None:
        """A reload: scans started from now on get these limits; queued ones are checked against
        the new policy when they start, running ones keep their plan; more may now run at once."""
        self.limits.now = limits
        self.live.admit()

    async def shutdown(self, reason: str) -> None:
        self.live.stop_all(reason)
        for task in self._tasks:
            task.cancel()
        await self.live.ended()
        await self.io.drain()  # every state above is written (or kept unsaved) before the store closes
        self.events.close()  # event streams send what is written, then end: the servers can stop

    async def expire(self) -> int:
        """Delete finished scans that ended more than retention_days ago; how many went."""
        return await self.retention.expire()

    # -- requests ------------------------------------------------------------------------------
    async def start(self, req: ScanRequest, owner: str | None, idempotency_key: str | None,
                    remote: bool = False, only_changes: bool = False) -> tuple[dict, bool]:
        """Queue a scan; returns its status and whether it is new (False for a replayed key).
        `remote`: the request came over HTTPS (see Policy.apply); `only_changes`: see Admission.admit."""
        row, queued = await self.admission.admit(req, owner, idempotency_key, remote, only_changes)
        if queued is not None:
            self.queue.push(queued)
            self.live.admit()
        return _status_of(self.persist.current(row)), queued is not None

    async def status(self, scan_id: str, viewer: str | None) -> dict:
        return _status_of(await self._get(scan_id, viewer))

    async def result(self, scan_id: str, viewer: str | None, page: int, per_page: int) -> dict:
        """One page of the result: `devices_found` and `open_ports_total` count the whole scan."""
        scan = await self._get(scan_id, viewer)
        devices, (found, open_total) = await self.persist.result_page(scan_id, page, per_page)
        # A running scan's coverage lives with its run; an ended one's was stored as it ended.
        running = self.live.running.get(scan_id)
        coverage = running.run.result.coverage() if running else scan.get("coverage")
        covered = {"coverage": coverage} if coverage else {}
        doc = document(scan_id, scan["status"], devices, _duration(scan),
                       **{k: scan[k] for k in ("target", "profile", "site_id", "started_at", "finished_at")},
                       **(scan["cve"] or {}), **covered)
        return doc | {"devices_found": found, "open_ports_total": open_total, "page": page, "per_page": per_page,
                      "devices": devices}

    async def rematch(self, scan_id: str, viewer: str | None, page: int, per_page: int) -> dict:
        """Match a finished scan's stored result against the CVE data of now; one page of it, as
        result() gives it."""
        scan = await self._settled(scan_id, viewer)
        if scan["status"] not in FINISHED:
            raise ScanError(409, "Scan not finished",
                            f"scan {scan_id} is {scan['status']}: its CVEs are matched when it ends")
        if scan["cve"] is None:
            raise ScanError(409, "Scan without CVE matching",
                            f"scan {scan_id} did not match CVEs (only deep scans, and custom ones with "
                            "enable_cve_match, do), or it ended before it could")
        matched = await self.cves.rematch(await self.persist.cve_devices(scan_id))
        try:
            await self.persist.save_cves(scan_id, matched.devices, matched.scan)
        except KeyError:
            raise not_found(scan_id) from None  # deleted meanwhile
        log.info("scan.rematched", scan_id=scan_id, **matched.scan.get("cve_counts", {}))
        return await self.result(scan_id, viewer, page, per_page)

    async def cve_status(self) -> dict:
        return await self.cves.status()

    async def stop(self, scan_id: str, viewer: str | None) -> dict:
        scan = await self._settled(scan_id, viewer)
        if scan["status"] in FINISHED:
            raise ScanError(409, "Scan already finished", f"scan {scan_id} is {scan['status']}")
        if scan_id in self.live.running:
            self.live.finish(scan_id, "cancelled", None)
            await asyncio.shield(self.live.finishing[scan_id])
        else:  # queued; or suspended by a stop under way (stop_all), whose checkpoint must go too
            self.queue.remove(scan_id)
            self.persist.set_state(scan_id, "cancelled", finished_at=utc_now())
            self.persist.drop_checkpoint(scan_id)
        return await self.status(scan_id, viewer)

    async def delete(self, scan_id: str, viewer: str | None) -> None:
        """Delete a finished scan and its results; a queued or running one must be stopped first."""
        scan = await self._settled(scan_id, viewer)
        if scan["status"] not in FINISHED:
            raise ScanError(409, "Scan not finished", f"scan {scan_id} is {scan['status']}; stop it first")
        self.persist.retry(scan_id)  # the store must know it finished
        if not await self.retention.delete(scan_id):
            raise not_found(scan_id)  # deleted meanwhile
        log.info("scan.deleted", scan_id=scan_id)

    async def list(self, page: int, per_page: int, status: str | None, site_id: str | None,
                   viewer: str | None) -> dict:
        rows, total = await self.persist.scans(page, per_page, status, site_id, viewer)
        return {"scans": [_status_of(r) for r in rows], "page": page, "per_page": per_page, "total": total}

    async def _get(self, scan_id: str, viewer: str | None) -> dict:
        scan = await self.persist.scan(scan_id)
        if scan is None or (viewer is not None and scan["owner"] != viewer):
            raise not_found(scan_id)
        return scan

    async def _settled(self, scan_id: str, viewer: str | None) -> dict:
        """The scan, once an ending under way (its last results being written) is over."""
        scan = await self._get(scan_id, viewer)
        if scan_id in self.live.finishing:  # it ended while the request came: say how
            await asyncio.shield(self.live.finishing[scan_id])
            scan = await self._get(scan_id, viewer)
        return scan


def _status_of(scan: dict) -> dict:
    """The body of GET /api/v1/scans/{id}: the original's fields plus created, finished and error."""
    return {**{k: scan[k] for k in STATUS_KEYS}, "excluded_addresses": scan["options"].get("excluded_addresses", 0)}


def _duration(scan: dict) -> float:
    if not scan["started_at"]:
        return 0
    end = parse(scan["finished_at"]) if scan["finished_at"] else datetime.now(UTC)
    return (end - parse(scan["started_at"])).total_seconds()


def _resumed(stored: Stored, policy: Policy, dispatcher: Dispatcher, net: NetInfo | None) -> ScanRun:
    """The run of a scan a restart interrupted, under the policy of now: PolicyError if its plan
    no longer fits it (targets now outside it or excluded, a rate its request asked for above
    its max_rate). A scan that asked for no rate has the engine's ceiling, not a user's: it runs
    under a lowered max_rate, as a queued scan does (queue.recheck)."""
    spec = spec_from_json(stored.spec)
    targets, _ = policy.apply(spec.targets, remote=stored.remote)
    if targets != spec.targets:
        raise PolicyError(403, "Target not allowed", "some of its targets are now excluded", "target")
    policy.check_rate(stored.rate)
    spec = dataclasses.replace(spec, rate=min(spec.rate, policy.max_rate))
    return ScanRun(spec, dispatcher, net, Checkpoint(spec.retries, stored))
