"""The scans running now: started from the queue as places free up, stepped whenever the engine
has results (its result rings' eventfds wake the event loop), flushed to the store every
FLUSH_EVERY, profiled once swept and matched against the CVE data (the stages after the sweep,
each failing on its own), then ended: their last results written, then their state.
Between flushes, a running scan's progress and devices live here, in its ScanRun."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from functools import partial

import structlog

from netscand.scan.cves import CveMatching, Matched
from netscand.scan.dispatch import Dispatcher
from netscand.scan.inventory import Inventory
from netscand.scan.limits import CurrentLimits
from netscand.scan.persist import Persist, device_row
from netscand.scan.policy import PolicyError
from netscand.scan.queue import ScanQueue, recheck
from netscand.scan.resume import Checkpoint, spec_json
from netscand.scan.runner import ScanRun
from netscand.scan.stages import ProfilingStage
from netscand.store import StoreError
from netscand.store.checkpoints import Delta
from netscand.store.clock import utc_now

log = structlog.get_logger()

FLUSH_EVERY = 0.5  # seconds between progress and result writes of a running scan
# Devices one flush saves per scan (the rest stay dirty for the next): they are built on the
# event loop, so a flush must stay a few milliseconds however many hosts answered at once.
FLUSH_HOSTS = 512
SAVE_FAILED = "internal error saving the results; the daemon's log has the details"


class Running:
    """One running scan: its run and what the control process does around it."""

    def __init__(self, scan_id: str, run: ScanRun) -> None:
        self.id = scan_id
        self.run = run
        self.started = time.monotonic()
        self.done_before = 0  # probes done before this life: a resumed scan's rate counts only its own
        self.profiling: asyncio.Task | None = None  # names, services and CVEs, after the port scan
        self.cves: Matched | None = None  # what CVE matching found, for the last write
        self.flushing: asyncio.Future | None = None  # the last progress write, until it is done
        self.checkpointing: asyncio.Future | None = None  # its checkpoint's write under way

    def progress(self) -> dict:
        """The progress fields of the scan's state, with an estimated completion once it can."""
        done, planned = self.run.progress()
        result = self.run.result
        fields: dict[str, int | str | None] = {
            "progress_percent": min(99, 100 * done // planned) if planned else 0,
            "hosts_found": result.up_count,
            "ports_found": result.open_ports,
            "estimated_completion": None,
        }
        elapsed = time.monotonic() - self.started
        if (paced := self.run.remaining_s()) is not None:  # hours of pacing, not probes at a rate
            fields["estimated_completion"] = utc_now(timedelta(seconds=paced))
        elif (own := done - self.done_before) > 0 and planned and elapsed > 1:
            fields["estimated_completion"] = utc_now(timedelta(seconds=(planned - done) * elapsed / own))
        return fields

    def ending(self) -> tuple[str, str | None] | None:
        """How the swept scan ends, (status, error); None if it goes on to the profiling stage."""
        run = self.run
        if run.failure:
            return "failed", run.failure
        if run.errors and not run.result.up_count:
            return "failed", "; ".join(run.errors)
        return None if ProfilingStage.wanted(run) or CveMatching.wanted(run) else ("completed", None)

    def changed_devices(self) -> list[dict]:
        result, profiling = self.run.result, self.run.spec.profiling
        return [device_row(result, h, profiling, final=False) for h in result.take_dirty(FLUSH_HOSTS)]

    def cancel(self) -> None:
        self.run.cancel()
        if self.profiling:
            self.profiling.cancel()


class Live:
    def __init__(self, dispatcher: Dispatcher, persist: Persist, queue: ScanQueue, limits: CurrentLimits,
                 cves: CveMatching) -> None:
        self.dispatcher = dispatcher
        self.persist = persist
        self.queue = queue
        self.limits = limits
        self.stage = ProfilingStage()
        self.cves = cves
        self.inventory = Inventory(persist.store, persist.io, persist.events)
        self.running: dict[str, Running] = {}
        self.finishing: dict[str, asyncio.Task] = {}  # scans whose last results are being written
        self.stopping = False  # shutting down: nothing more is started

    def admit(self) -> None:
        """Start queued scans while there is room, each under the policy of now."""
        while self.queue and len(self.running) < self.limits.now.max_running and not self.stopping:
            queued = self.queue.pop()
            try:
                spec = recheck(queued, self.limits.now.policy)
            except PolicyError as exc:
                # A reload narrowed the policy since the scan was accepted: it fails before a packet is sent.
                log.warning("scan.refused", scan_id=queued.id, owner=queued.owner, reason=exc.detail)
                self.persist.set_state(queued.id, "failed", finished_at=utc_now(),
                                       error=f"the target policy changed while the scan was queued: {exc.detail}")
                continue
            # A paced scan's plans are cut by time, not by a sequence a restart can replay.
            checkpoint = Checkpoint(spec.retries) if spec.pacing is None else None
            begun = None
            if checkpoint:
                begun = self.persist.begin_checkpoint(queued.id, spec_json(spec), queued.remote, queued.request.rate)
            self._start(queued.id, ScanRun(spec, self.dispatcher, queued.net, checkpoint))
            if begun and (running := self.running.get(queued.id)):
                begun.add_done_callback(partial(self._written, running))

    def _start(self, scan_id: str, run: ScanRun) -> None:
        self.persist.set_state(scan_id, "running", started_at=utc_now())
        self.resume(scan_id, run)

    def resume(self, scan_id: str, run: ScanRun) -> None:
        """Run a scan, or go on with one a restart interrupted (its run holds its checkpoint)."""
        running = self.running[scan_id] = Running(scan_id, run)
        run.step()
        running.done_before = run.progress()[0]  # its done shards, replayed
        self._checkpoint(running)
        self._check_done(scan_id)

    def wake(self) -> None:
        """The engine has results: route them, and let every scan plan on."""
        self.dispatcher.poll()
        for scan_id in list(self.running):
            running = self.running[scan_id]
            running.run.step()
            if running.run.checkpoint and running.run.checkpoint.urgent:  # the engine waits for it
                self._checkpoint(running)
            self._check_done(scan_id)

    async def tick_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            try:
                self.wake()
                for running in list(self.running.values()):
                    self._checkpoint(running)
                    self._flush(running)
                self.persist.retry_all()
            except Exception:
                log.exception("orchestrator.tick_failed")

    def _check_done(self, scan_id: str) -> None:
        running = self.running.get(scan_id)
        if running is None or not running.run.done or running.profiling:
            return
        ending = running.ending()
        if ending is None:
            running.profiling = asyncio.get_running_loop().create_task(self._profile(running))
        else:
            self.finish(scan_id, *ending)

    async def _profile(self, running: Running) -> None:
        # Names, services and CVEs are extras: the port results stand, and the scan must still
        # end (and give its place back) rather than read "running" for ever.
        run = running.run
        if ProfilingStage.wanted(run):
            try:
                await self.stage.run(run)
            except Exception as exc:
                log.exception("orchestrator.profile_failed", scan_id=running.id, error=str(exc))
        if CveMatching.wanted(run):  # after profiling: it matches the services profiling named
            try:
                running.cves = await self.cves.run(run)
            except Exception as exc:
                log.exception("orchestrator.cves_failed", scan_id=running.id, error=str(exc))
        if self.running.get(running.id) is running:  # not stopped meanwhile
            self.finish(running.id, "completed", None)

    def finish(self, scan_id: str, status: str, error: str | None) -> None:
        """The scan ends: its place frees now; its last results are written, then its state."""
        running = self.running.pop(scan_id)
        if status == "cancelled":
            running.cancel()
        task = asyncio.get_running_loop().create_task(self._finalize(running, status, error))
        self.finishing[scan_id] = task
        task.add_done_callback(lambda _: self.finishing.pop(scan_id, None))
        self.admit()

    async def _finalize(self, running: Running, status: str, error: str | None) -> None:
        fields = {**running.progress(), "estimated_completion": None, "error": error, "finished_at": utc_now(),
                  "coverage": running.run.result.coverage()}
        if status == "completed":
            fields["progress_percent"] = 100
        try:
            await self.persist.save_results(running.id, running.run.result, running.run.spec.profiling)
        except StoreError as exc:
            status, fields["error"] = "failed", f"storage: {exc.reason}"
        except Exception:
            # A bug, but the scan must still end rather than read "running" for ever.
            log.exception("orchestrator.save_failed", scan_id=running.id)
            status, fields["error"] = "failed", SAVE_FAILED
        else:
            await self._save_cves(running)
            if status == "completed":  # a partial view would report every device it missed gone
                await self.inventory.merge(running.id, running.run.spec)
        self.persist.set_state(running.id, status, **fields)
        if running.run.checkpoint:  # ended, whatever way: nothing to resume (dropped after the state)
            self.persist.drop_checkpoint(running.id)

    async def _save_cves(self, running: Running) -> None:
        # CVEs are an extra, as in _profile: the ports written stand, and the scan completes.
        if running.cves is None:
            return
        try:
            await self.persist.save_cves(running.id, running.cves.devices, running.cves.scan)
        except Exception as exc:
            log.exception("orchestrator.cves_save_failed", scan_id=running.id, error=str(exc))

    def _flush(self, running: Running) -> None:
        if running.flushing is not None and not running.flushing.done():
            return  # the writer is behind: what changed stays dirty for a later flush
        running.flushing = self.persist.flush(running.id, running.changed_devices(), running.progress())
        running.flushing.add_done_callback(partial(self._flushed, running))

    def _checkpoint(self, running: Running) -> None:
        """Write what the scan's checkpoint changed, one write at a time; once written, the
        shards it recorded are handed out and the retry passes granted."""
        checkpoint = running.run.checkpoint
        if checkpoint is None or running.checkpointing is not None:
            return
        delta = checkpoint.take()
        if not delta:
            return
        running.checkpointing = self.persist.checkpoint(running.id, delta)
        running.checkpointing.add_done_callback(partial(self._checkpointed, running, delta))

    def _written(self, running: Running, done: asyncio.Future) -> bool:
        """Whether a checkpoint write of a scan still running went through; if it did not, the
        scan fails with why: its shards wait for its writes, it cannot go on without its store."""
        if self.running.get(running.id) is not running:
            return False  # ended meanwhile
        exc = None if done.cancelled() else done.exception()
        if exc is None:
            return True
        log.error("orchestrator.checkpoint_failed", scan_id=running.id, exc_info=exc)
        reason = f"storage: {exc.reason}" if isinstance(exc, StoreError) else SAVE_FAILED
        running.cancel()  # finish cancels only a "cancelled" one: its plans and shards must go too
        self.finish(running.id, "failed", reason)
        return False

    def _checkpointed(self, running: Running, delta: Delta, done: asyncio.Future) -> None:
        running.checkpointing = None
        if not self._written(running, done):
            return
        checkpoint = running.run.checkpoint
        assert checkpoint is not None
        for gen, shard, attempt in checkpoint.written(delta):
            self.dispatcher.grant(gen, shard, attempt)
        self.dispatcher.pump()
        if checkpoint.urgent:
            self._checkpoint(running)

    def _flushed(self, running: Running, done: asyncio.Future) -> None:
        exc = None if done.cancelled() else done.exception()
        if exc is None or self.running.get(running.id) is not running:
            return  # written; or the scan has ended meanwhile, and its last write says how
        if not isinstance(exc, StoreError):
            log.error("orchestrator.flush_failed", scan_id=running.id, exc_info=exc)
            return
        # A store that refuses writes fails this scan, never the daemon.
        self.running.pop(running.id).cancel()
        self.persist.set_state(running.id, "failed", error=f"storage: {exc.reason}", finished_at=utc_now(),
                               estimated_completion=None)
        if running.run.checkpoint:
            self.persist.drop_checkpoint(running.id)
        self.admit()

    def stop_all(self, reason: str) -> None:
        """Shutting down: a running scan with a checkpoint is suspended (it stays `running` and
        goes on at the next start, as after a kill); a paced one is cancelled; queued scans
        stay `queued`, and are queued again at the next start (Orchestrator.interrupted);
        nothing more starts."""
        self.stopping = True  # or each cancelled scan would start a queued one
        self.dispatcher.poll()  # the records the rings hold now go into the last checkpoints
        for scan_id in list(self.running):
            if self.running[scan_id].run.checkpoint is None:
                self.finish(scan_id, "cancelled", reason)
            else:
                self._suspend(self.running.pop(scan_id))

    def _suspend(self, running: Running) -> None:
        """Its last checkpoint and progress written (queued behind the writes under way, each
        its own transaction), and nothing more: the run is not cancelled, since a cancelled
        plan's ends would read as its shards' ends. What the workers send from now on is
        bounded as after a kill (scan/resume.py): no pass goes out whose number is not stored."""
        if running.profiling:  # run again from its start when the scan resumes
            running.profiling.cancel()
        checkpoint = running.run.checkpoint
        assert checkpoint is not None
        writes = [self.persist.checkpoint(running.id, delta)] if (delta := checkpoint.take()) else []
        # Nobody estimates its end while the daemon is down; `running` is what it is at the next start.
        progress = {**running.progress(), "estimated_completion": None}
        writes.append(self.persist.flush(running.id, running.changed_devices(), progress))
        for written in writes:
            written.add_done_callback(partial(self._suspended, running.id))
        log.info("scan.suspended", scan_id=running.id)

    @staticmethod
    def _suspended(scan_id: str, done: asyncio.Future) -> None:
        exc = None if done.cancelled() else done.exception()
        if exc is not None:  # the store keeps the checkpoint before this one, whole: it resumes from there
            log.error("orchestrator.suspend_failed", scan_id=scan_id, exc_info=exc)

    async def ended(self) -> None:
        """Wait until the last results of every scan that ended are written."""
        await asyncio.gather(*self.finishing.values(), return_exceptions=True)
