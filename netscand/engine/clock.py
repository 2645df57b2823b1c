"""The engine's one clock, and the send tick every probe carries.

Every process reads the same monotonic clock (heartbeats, pacing, reply deadlines), so times
written by one are comparable in another. A probe carries its send time as a tick, the clock
in 4 ms units cut to TICK_BITS bits: the low bits of the TCP source port, the ICMP echo's
payload. A reply echoes the tick back, which times it without any per-probe table; but a tick
wraps every WRAP_S seconds, so a reply later than that would be read as a fast one. An adaptive
timeout therefore must never wait that long (plan.TIMEOUT_MAX_MS asserts it, plan.read refuses
a plan that asks for it).
"""

from __future__ import annotations

import time

TICKS_PER_S = 250
TICK_BITS = 10  # of the source port: a plan's probes use sport_base .. sport_base + TICK_MASK
TICK_MASK = (1 << TICK_BITS) - 1
WRAP_S = (TICK_MASK + 1) / TICKS_PER_S  # 4.096 s
WRAP_MS = int(WRAP_S * 1000)

now = time.monotonic


def tick(at: float) -> int:
    """The send tick at monotonic time `at` (not yet cut to TICK_BITS: probes mask it)."""
    return int(at * TICKS_PER_S)


def since(sent_tick: int, at: float) -> float:
    """Seconds from a tick echoed by a reply (already masked) to `at`, modulo WRAP_S."""
    return ((int(at * TICKS_PER_S) - sent_tick) & TICK_MASK) / TICKS_PER_S
