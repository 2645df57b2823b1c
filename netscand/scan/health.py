"""The engine's health as the rest of the daemon sees it: its workers' rows of the shared table.

The one narrow view of the engine that /metrics, /readyz and the one-shot scan's progress read,
so none of them knows the shared-memory layout. Each worker writes its own row (pid,
generation, ready flag, heartbeat, probes sent, replies matched, frames dropped as malformed by
reason) every tenth of a second; reading it costs no message to the worker, so it can be looked
at as often as anyone asks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from netscand.engine.shm import MALFORMED, Shared
from netscand.scan.dispatch import Dispatcher

# Workers beat every 0.1 s and the supervisor kills one that is silent for 10 s; silence for
# half that already means the worker cannot take work now.
STALE_AFTER_S = 5.0
# Why a worker dropped a received frame unread, as /metrics labels it (code 0 is no reason).
MALFORMED_REASONS = tuple(reason for reason in MALFORMED if reason)


@dataclass(frozen=True)
class WorkerState:
    index: int
    started: bool  # has beaten at least once and finished its start-up
    heartbeat_age: float  # seconds since its last beat (monotonic clock, shared by all processes)
    restarts: int
    sent: int
    matched: int
    malformed: dict[str, int]  # frames dropped unread, by reason

    @property
    def alive(self) -> bool:
        return self.started and self.heartbeat_age <= STALE_AFTER_S

    def trouble(self) -> str | None:
        """Why this worker cannot take work, or None when it can."""
        if not self.started:
            return f"worker {self.index} has not started"
        if not self.alive:
            return f"worker {self.index} has not beaten for {self.heartbeat_age:.0f} s"
        return None


class EngineHealth:
    """The workers' state and counters, read from the table the dispatcher hands work by."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._shared: Shared = dispatcher.shared

    def workers(self) -> list[WorkerState]:
        now = time.monotonic()
        return [self._worker(index, now) for index in range(self._shared.workers)]

    def _worker(self, index: int, now: float) -> WorkerState:
        row = self._shared.worker_row(index)
        counts = self._shared.malformed(index)
        malformed = {reason: counts[MALFORMED.index(reason)] for reason in MALFORMED_REASONS}
        # A worker takes its predecessor's generation plus one, the first one 1: every
        # generation after the first is a restart, also those between two looks at the table.
        return WorkerState(index, bool(row.ready), now - row.heartbeat, max(row.generation - 1, 0),
                           row.sent, row.matched, malformed)

    def probes_sent(self) -> int:
        """Probes every worker has sent since the engine started (restarts included)."""
        return sum(worker.sent for worker in self.workers())

    def trouble(self) -> str | None:
        """Why the engine cannot run scans now (every worker that cannot, named), or None."""
        return "; ".join(t for w in self.workers() if (t := w.trouble())) or None
