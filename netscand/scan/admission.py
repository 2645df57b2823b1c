"""Admission: whether a start request becomes a queued scan.

In order: a replayed Idempotency-Key answers with its earlier scan; the owner must have a place
left in the queue; the targets must parse and pass the policy, the rate too; the routing table
must be readable. Only then is the scan stored, as queued.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import structlog

from netscand.netinfo import NetInfo
from netscand.scan.errors import ScanError
from netscand.scan.events import Events
from netscand.scan.limits import CurrentLimits, Limits
from netscand.scan.policy import Policy, PolicyError
from netscand.scan.profiles import ScanRequest, resolve
from netscand.scan.queue import Queued
from netscand.scan.targets import TargetError, Targets, parse_targets_async
from netscand.store import Store, StoreError
from netscand.store import events as stored_events
from netscand.store import sites
from netscand.store.clock import utc_now
from netscand.store.threads import StoreThreads

log = structlog.get_logger()

QUEUE_RETRY_AFTER_S = 60  # a queued scan waits for a running one to end: minutes, not seconds


def request_digest(req: ScanRequest) -> str:
    """What an Idempotency-Key's replay is compared by: the validated request, so spellings the
    API takes as one (a site_id's case, null for a field left out) are one request."""
    return hashlib.sha256(orjson.dumps(dataclasses.asdict(req), option=orjson.OPT_SORT_KEYS)).hexdigest()


def replayed(earlier: dict, digest: str | None) -> dict:
    """The earlier scan of a replayed key, unless the key came with another request."""
    # Scans stored before digests were kept have none: their key alone decides, as it did.
    if earlier["request_digest"] is not None and earlier["request_digest"] != digest:
        raise ScanError(422, "Idempotency-Key reused", "the Idempotency-Key was reused with a different "
                        f"request: it started scan {earlier['id']} with another body", "Idempotency-Key")
    return earlier


def unknown_site(site_id: str) -> ScanError:
    return ScanError(422, "Unknown site", f"site_id {site_id} names no site; create one with "
                     "POST /api/v1/sites (netscanctl sites create NAME)", "site_id")


def refused(exc: PolicyError) -> ScanError:
    return ScanError(exc.status, exc.title, exc.detail, exc.field)


class Claim:
    """A place in an owner's queue, given back when the start fails unless kept."""

    kept = False

    def keep(self) -> None:
        self.kept = True


class Claims:
    """Each owner's places in the queue: taken while a scan is being started (so a burst of
    concurrent starts can't overshoot), kept while it is queued, released as it leaves."""

    def __init__(self) -> None:
        self.waiting: Counter[str | None] = Counter()  # per owner: scans queued or being started

    @contextmanager
    def claim(self, owner: str | None, limit: int) -> Iterator[Claim]:
        if self.waiting[owner] >= limit:
            raise ScanError(429, "Too many queued scans", f"{owner or 'this client'} already has {limit} "
                            "scans queued or starting; retry once one has started",
                            headers={"Retry-After": str(QUEUE_RETRY_AFTER_S)})
        self.waiting[owner] += 1
        claim = Claim()
        try:
            yield claim
        finally:
            if not claim.kept:
                self.release(owner)

    def hold(self, owner: str | None) -> None:
        """A place taken back beyond the limit: a scan accepted before a restart (requeue)."""
        self.waiting[owner] += 1

    def release(self, owner: str | None) -> None:
        self.waiting[owner] -= 1
        if self.waiting[owner] <= 0:
            del self.waiting[owner]


class Admission:
    def __init__(self, store: Store, io: StoreThreads, claims: Claims, limits: CurrentLimits,
                 events: Events) -> None:
        self.store = store
        self.io = io
        self.claims = claims
        self.limits = limits
        self.events = events  # the orchestrator's, which its streams wait on

    async def admit(self, req: ScanRequest, owner: str | None, key: str | None,
                    remote: bool, only_changes: bool = False) -> tuple[dict, Queued | None]:
        """The new scan's stored row and its place in the queue; or, for a replayed
        Idempotency-Key, the earlier scan's row and None. Raises ScanError. `only_changes`: its
        webhooks get only its changes and its end (a schedule's `deliver: changes`)."""
        digest = request_digest(req) if key else None
        if key and (earlier := await self._by_key(owner, key)):
            return replayed(earlier, digest), None
        limits = self.limits.now  # one request, one set of limits, even if a reload comes meanwhile
        with self.claims.claim(owner, limits.max_queued_per_owner) as claimed:
            scan, queued = await self._prepare(req, owner, remote, limits)
            if only_changes:  # in the scan's own row: the webhooks read it for as long as the scan exists
                scan["options"]["deliver"] = "changes"
            row = await self._create(scan | {"idempotency_key": key, "request_digest": digest}, digest)
            if row["id"] != queued.id:
                return row, None  # another start with this key was stored first
            claimed.keep()
        self.events.wake()  # its `queued` event was written with it
        log.info("scan.state", scan_id=queued.id, status="queued", target=req.target, profile=req.profile)
        return row, queued

    async def vet(self, req: ScanRequest, owner: str | None, remote: bool) -> None:
        """Raise the ScanError admit() would for the request's targets, rate (the policy) and
        site, queueing nothing: a schedule's request is checked so when it is made."""
        await _targets(req, owner, remote, self.limits.now.policy)
        if req.site_id and await self.io.read(self.store.call, "cannot read the site", sites.get, req.site_id) is None:
            raise unknown_site(req.site_id)

    async def _by_key(self, owner: str | None, key: str) -> dict | None:
        return await self.io.read(self.store.scan_by_idempotency_key, owner, key)

    async def _create(self, scan: dict, digest: str | None) -> dict:
        try:
            # The site's check and the insert in one call: a site deleted meanwhile can't be named.
            return await self.io.write(self.store.call, f"cannot save scan {scan['id']}", stored_events.create_scan, scan)
        except sites.UnknownSite:
            raise unknown_site(scan["site_id"]) from None
        except StoreError:
            # Two concurrent starts with one key: the first insert won while we resolved routes.
            key = scan["idempotency_key"]
            earlier = await self._by_key(scan["owner"], key) if key else None
            if not earlier:
                raise
            return replayed(earlier, digest)

    async def requeue(self, row: dict) -> Queued:
        """A scan the previous control process left queued, queued again with its id and owner
        under the limits of now: its request is rebuilt from its stored row, and checked as a new
        one is. Raises ScanError (its targets or rate no longer fit the policy). It takes its
        owner's place in the queue back, beyond the limit if need be: it was accepted once."""
        # A row from before `remote` was stored gets the stricter policy of the two.
        remote = row["options"].get("remote", True)
        queued, _ = await self._queued(row["id"], ScanRequest.stored(row), row["owner"], remote, self.limits.now)
        self.claims.hold(row["owner"])
        return queued

    async def _prepare(self, req: ScanRequest, owner: str | None, remote: bool,
                       limits: Limits) -> tuple[dict, Queued]:
        """The new scan's row and its queue entry (engine spec, routes), or a ScanError."""
        queued, skipped = await self._queued(str(uuid.uuid4()), req, owner, remote, limits)
        return _row(queued, skipped), queued

    @staticmethod
    async def _queued(scan_id: str, req: ScanRequest, owner: str | None, remote: bool,
                      limits: Limits) -> tuple[Queued, int]:
        """The scan's queue entry, and the addresses the policy left out of its targets."""
        policy = limits.policy
        targets, skipped = await _targets(req, owner, remote, policy)
        spec = resolve(req, targets, min(limits.rate, policy.max_rate), limits.retries, limits.discovery)
        return Queued(scan_id, owner, req, spec, await _routes(), remote), skipped


async def _targets(req: ScanRequest, owner: str | None, remote: bool, policy: Policy) -> tuple[Targets, int]:
    """The request's targets the policy lets it scan, and how many addresses it left out."""
    try:
        # Hostnames are resolved once, here, in the resolver's own threads, with a deadline.
        targets = await parse_targets_async(req.target)
    except TargetError as exc:
        raise ScanError(422, "Invalid target", str(exc), "target") from None
    try:
        allowed = policy.apply(targets, remote=remote)
        policy.check_rate(req.rate)
    except PolicyError as exc:
        log.warning("scan.refused", target=req.target, owner=owner, reason=exc.detail)
        raise refused(exc) from None
    return allowed


async def _routes() -> NetInfo:
    try:
        # pyroute2 runs its own asyncio loop, which can't nest in this one: read routes in a thread.
        return await asyncio.get_running_loop().run_in_executor(None, NetInfo)
    except OSError as exc:
        raise ScanError(503, "Routes unavailable", f"cannot read the routing table: {exc}") from None


def _row(queued: Queued, skipped: int) -> dict:
    req = queued.request
    # `remote` is kept for a restart, which queues the scan again under the same policy (requeue).
    options = req.options() | {"remote": queued.remote} | ({"excluded_addresses": skipped} if skipped else {})
    return {
        "id": queued.id, "status": "queued", "target": req.target,
        "profile": req.profile, "site_id": req.site_id, "options": options,
        "created_at": utc_now(), "started_at": None, "finished_at": None,
        "estimated_completion": None, "progress_percent": 0, "hosts_found": 0,
        "ports_found": 0, "error": None, "owner": queued.owner,
    }
