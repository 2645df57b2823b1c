"""The composition root of `netscand scan`: one scan in the foreground, without the daemon
(like nmap).

The process becomes the supervisor: it forks the engine workers, built as the daemon builds
them (compose.py), and one control child that runs the scan and tells a View (cli/scan.py's)
its progress and outcome; the supervisor exits with the control child's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from netscand import compose
from netscand.config import Config, PolicyConfig
from netscand.scan.cves import NO_DATA, CveMatching, Matched, merged
from netscand.scan.dispatch import Dispatcher
from netscand.scan.health import EngineHealth
from netscand.scan.policy import Policy
from netscand.scan.profiles import ScanRequest, discovery, resolve
from netscand.scan.result import document
from netscand.scan.runner import ScanRun
from netscand.scan.spec import ScanSpec
from netscand.scan.stages import ProfilingStage
from netscand.scan.targets import Targets
from netscand.store.clock import utc_now
from netscand.supervisor import ChildSpec, Supervisor

EXIT_FAILED = 1
WAIT_S = 0.2  # longest wait for the workers' results
SHOW_EVERY_S = 0.25

log = structlog.get_logger()


class OneShotError(Exception):
    """The scan cannot start here (exit status 1; bad input is the caller's to refuse)."""


@dataclass(frozen=True)
class OneShot:
    """A scan, as the policy and the configuration let it run."""

    spec: ScanSpec
    target: str
    profile: str
    skipped: int  # addresses of the target the policy excludes
    cve_db: Path  # the daemon's CVE database, for a scan that matches CVEs


@dataclass(frozen=True)
class Progress:
    done: int  # probes planned and finished
    planned: int
    probes_sent: int  # by every worker, retries included
    hosts_up: int
    elapsed_s: float


@dataclass(frozen=True)
class Outcome:
    failure: str | None  # why the engine failed the scan: then there is no result
    errors: list[str] = field(default_factory=list)  # what went wrong for part of the scan
    result: dict[str, Any] | None = None  # the result document


class View(Protocol):
    """What the command line shows. Made in the control child, after the fork: a live display
    may run a thread, which a fork would not carry."""

    def progress(self, now: Progress) -> None: ...

    def swept(self, errors: list[str]) -> None:
        """The sweep is over and did not fail: what went wrong for part of the scan, shown now,
        since identifying the devices found may take minutes."""

    def identifying(self) -> None: ...

    def close(self) -> None:
        """The scan is over: take any live display away before the outcome is shown."""

    def outcome(self, outcome: Outcome) -> None:
        """The result, or why there is none (its errors were shown by swept())."""


def prepare(cfg: Config, request: ScanRequest, targets: Targets, rate: float | None) -> OneShot:
    """The scan `request` asks for, within the policy; `rate` as given on the command line.
    Raises PolicyError and PortSpecError."""
    e = cfg.engine
    policy = Policy.from_config(cfg.policy)
    targets, skipped = policy.apply(targets)
    policy.check_rate(rate)
    # --rate pins the rate (as a request's `rate` does); without it, engine.rate is the ceiling
    # of the engine's closed loop.
    spec = resolve(request, targets, rate or min(e.rate, policy.max_rate), e.retries,
                   discovery(e.ping_icmp, e.ping_syn_ports, e.ping_ack_ports), pinned=rate is not None)
    target = request.target if isinstance(request.target, str) else ",".join(request.target)
    return OneShot(spec, target, request.profile, skipped, compose.cve_path(cfg.daemon.state_dir))


def check_raw_sockets() -> None:
    """Before run(): the engine's workers need raw sockets, and without them nothing else is
    worth saying about the scan."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except PermissionError:
        raise OneShotError("sending raw packets needs root or CAP_NET_RAW") from None


def run(scan: OneShot, workers: int, policy: PolicyConfig, reread: Callable[[], PolicyConfig],
        view: Callable[[], View]) -> int:
    """Run the scan (once check_raw_sockets() passed) with `workers` engine workers enforcing
    `policy` (`reread` reads it again from the file); the exit status is the control child's."""
    engine = compose.engine(workers, policy, reread, hangup=False)
    # What the workers log (frames they drop, plans they refuse) goes to stderr: stdout is the result's.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    control = ChildSpec("control", lambda i: _control(Dispatcher(engine.shared), scan, view()), primary=True)
    return Supervisor([engine.workers, control]).run()


def _control(dispatcher: Dispatcher, scan: OneShot, view: View) -> None:
    started, began = utc_now(), time.monotonic()
    run = ScanRun(scan.spec, dispatcher)
    cves = None
    with contextlib.closing(view):
        _drive(run, dispatcher, EngineHealth(dispatcher), view)
        if run.failure is None:
            view.swept(run.errors)
            if ProfilingStage.wanted(run):
                view.identifying()
                asyncio.run(ProfilingStage().run(run))
            if CveMatching.wanted(run):
                cves = asyncio.run(_match_cves(scan.cve_db, run))
    outcome = _outcome(run, scan, started, time.monotonic() - began, cves)
    view.outcome(outcome)
    raise SystemExit(EXIT_FAILED if outcome.result is None or (outcome.errors and not outcome.result["devices"])
                     else 0)


def _drive(run: ScanRun, dispatcher: Dispatcher, health: EngineHealth, view: View) -> None:
    """Run the scan's plans on the engine until the scan is done, showing its progress."""
    began = shown = time.monotonic()
    run.step()
    while not run.done:
        select.select(dispatcher.fds(), [], [], WAIT_S)
        dispatcher.poll()
        run.step()
        if time.monotonic() - shown >= SHOW_EVERY_S:  # not at every wake: results come thousands a second
            shown = time.monotonic()
            view.progress(_progress(run, health, shown - began))
    view.progress(_progress(run, health, time.monotonic() - began))  # the whole of it, shown while identifying


def _progress(run: ScanRun, health: EngineHealth, elapsed_s: float) -> Progress:
    done, planned = run.progress()
    return Progress(done, planned, health.probes_sent(), len(run.result.up_hosts), elapsed_s)


async def _match_cves(path: Path, run: ScanRun) -> Matched:
    """The daemon's CVE data, when there is some (if this user can't read it, the result says
    why). A missing database is not made: a one-shot scan leaves no file behind."""
    if not path.exists():
        return Matched([], {"cve_data": {"loaded": False, "note": NO_DATA}})
    try:
        return await compose.cve_matching(path).run(run)
    except Exception as exc:
        # CVEs are an extra, as in the daemon (live.py): the port results stand, and the result
        # says why it has none rather than the scan ending in a traceback.
        log.exception("oneshot.cves_failed", error=str(exc))
        return Matched([], {"cve_data": {"loaded": False, "note": f"CVE matching failed: {exc}"}})


def _outcome(run: ScanRun, scan: OneShot, started: str, duration_s: float, cves: Matched | None) -> Outcome:
    if run.failure is not None:
        return Outcome(run.failure)
    devices = run.result.devices(scan.spec.profiling)
    result = document(str(uuid.uuid4()), "completed", merged(devices, cves) if cves else devices, duration_s,
                      target=scan.target, profile=scan.profile, started_at=started, finished_at=utc_now(),
                      coverage=run.result.coverage(), **(cves.scan if cves else {}))
    return Outcome(None, run.errors, result)
