"""The engine workers as the control process sees them: their rows of the shared worker table.

Each worker writes its own row (pid, generation, ready flag, heartbeat, probes sent, replies
matched, frames dropped as malformed by reason) every tenth of a second; reading it costs no message to the worker, so
/metrics and /readyz can look as often as they are asked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from netscand.engine.shm import MALFORMED, Shared

# Workers beat every 0.1 s and the supervisor kills one that is silent for 10 s; silence for
# half that already means the worker cannot take work now.
STALE_AFTER_S = 5.0


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


def read_workers(shared: Shared) -> list[WorkerState]:
    now = time.monotonic()
    states = []
    for index in range(shared.workers):
        _, generation, ready, heartbeat, sent, matched = shared.worker_row(index)
        # A worker takes its predecessor's generation plus one, the first one 1: every
        # generation after the first is a restart, also those between two looks at the table.
        counts = shared.malformed(index)
        malformed = {reason: counts[code] for code, reason in enumerate(MALFORMED) if reason}
        states.append(WorkerState(index, bool(ready), now - heartbeat, max(generation - 1, 0),
                                  sent, matched, malformed))
    return states
