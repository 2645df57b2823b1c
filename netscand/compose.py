"""What both composition roots build the same way: the engine, as shared memory and the worker
children the supervisor forks, and CVE matching over the CVE database. daemon.py (`netscand
serve`) and oneshot.py (`netscand scan`) each add their own control child beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from netscand.engine import worker
from netscand.engine.guard import PlanGuard, PolicySource
from netscand.engine.shm import Shared
from netscand.scan.cves import CveMatching, OpenedOnUse
from netscand.supervisor import ChildSpec
from netscand.vuln.store import DB_NAME as CVE_DB


def cve_path(state_dir: str | Path) -> Path:
    """The CVE database `netscand cve` fills: beside the scan store, in the state directory."""
    return Path(state_dir) / CVE_DB


def cve_matching(path: Path) -> CveMatching:
    """CVE matching over the database at `path`, opened (made, empty, when missing) when first
    used: one that can't be is said so by each use, and never stops the daemon."""
    return CveMatching(OpenedOnUse(path))


@dataclass(frozen=True)
class Engine:
    shared: Shared  # made before any fork: every child maps the same pages
    workers: ChildSpec


def engine(workers: int, policy: PolicySource, reread: Callable[[], PolicySource], *, hangup: bool) -> Engine:
    """`workers` engine workers enforcing `policy`. They check every plan against it themselves
    and read it again with `reread` before they refuse one (a reload may have widened it) and,
    with `hangup`, on every reload the supervisor passes on."""
    shared = Shared(workers)
    guard = PlanGuard.of(policy)

    def run(index: int) -> None:
        worker.main(shared, index, guard, lambda: PlanGuard.of(reread()))

    spec = ChildSpec("worker", run, count=workers, heartbeat=lambda i: shared.worker_row(i).heartbeat,
                     ready=shared.worker_ready, hangup=hangup)
    return Engine(shared, spec)
