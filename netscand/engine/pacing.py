"""Token-bucket pacing: each plan's share of its rate, and the worker's ceiling over all of them."""

from __future__ import annotations

BATCH = 64  # probes a turn sends at most, at rates where BURST_S holds fewer
# Sending a fast rate may save up: a worker's turn (its replies read, a batch sent, the kernel's
# share of both) can outlast the BATCH / rate a bucket of BATCH holds (1.3 ms at 50,000/s), and
# a bucket that fills in less than a turn drops what the rate allowed: a scan pinned at
# 100,000/s sent 77,000/s. 4 ms is a few turns, far below a router queue's depth in time.
BURST_S = 0.004


class Pacer:
    """A token bucket: `rate` probes a second, with at most a batch or BURST_S of sending,
    whichever is more, saved up (20 ms of sending, if less), so a pause is never made up for
    by a burst. It starts full: a new plan's first probes go at once, however slow its rate."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate: float) -> None:
        self.tokens = 0.0
        self.at = 0.0  # the monotonic clock's origin: the first fill fills it
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(1.0, min(rate / 50, max(float(BATCH), rate * BURST_S)))

    def fill(self, now: float) -> float:
        """The probes that may go now."""
        self.tokens = min(self.tokens + (now - self.at) * self.rate, self.burst)
        self.at = now
        return self.tokens

    def wait(self) -> float:
        """How long until the next probe may go (after fill)."""
        return (1 - self.tokens) / self.rate
