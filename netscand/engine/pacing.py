"""Token-bucket pacing: each plan's share of its rate, and the worker's ceiling over all of them."""

from __future__ import annotations

BATCH = 64  # probes sent between two looks at the receive sockets


class Pacer:
    """A token bucket: `rate` probes a second, with at most a batch (or 20 ms of sending, if
    less) saved up, so a pause is never made up for by a burst. It starts full: a new plan's
    first probes go at once, however slow its rate."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate: float) -> None:
        self.tokens = 0.0
        self.at = 0.0  # the monotonic clock's origin: the first fill fills it
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(1.0, min(float(BATCH), rate / 50))

    def fill(self, now: float) -> float:
        """The probes that may go now."""
        self.tokens = min(self.tokens + (now - self.at) * self.rate, self.burst)
        self.at = now
        return self.tokens

    def wait(self) -> float:
        """How long until the next probe may go (after fill)."""
        return (1 - self.tokens) / self.rate
