"""Throttling of failed authentication on the TLS listener: a token bucket per client address,
the TCP peer's (uvicorn's proxy_headers are off: an X-Forwarded-For header can't pick it).

Each address may fail BURST times at once and then once every REFILL_S seconds (10 a minute);
past that its failures are answered 429 with Retry-After instead of 401. Only failures spend
tokens, and the token is checked first, so a client that authenticates is never throttled (the
Unix socket has no credentials to fail). Tokens are 256 random bits, so this is not what keeps
them from being guessed: it makes a misconfigured or hostile client cheap to answer and plain to
see (429s in the access log and in netscand_api_requests_total).

Memory is bounded: at most MAX_PEERS addresses are remembered, the longest-quiet one forgotten
first; a bucket that has refilled is forgotten too, as it would behave like a new one.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from netscand.api.problems import TOO_MANY_AUTH_FAILURES, Problem
from netscand.api.server import client_key

BURST = 10
REFILL_S = 6.0  # one failure more every 6 s: 10 a minute
MAX_PEERS = 4096


class AuthThrottle:
    def __init__(self) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # peer -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def failed(self, peer: str, now: float) -> None:
        """Spend one of the peer's tokens; raises a 429 Problem when none is left. An IPv6 peer
        is counted by its /64, as the listener counts its connections: one host may hold them all."""
        peer = client_key(peer)
        tokens, at = self._buckets.pop(peer, (float(BURST), now))
        tokens = min(float(BURST), tokens + (now - at) / REFILL_S)
        if tokens < 1:
            self._buckets[peer] = (tokens, now)
            wait = math.ceil((1 - tokens) * REFILL_S)
            raise Problem(429, TOO_MANY_AUTH_FAILURES, "Too many authentication failures",
                          f"this address failed to authenticate more than {BURST} times in "
                          f"{BURST * REFILL_S:.0f} s; retry in {wait} s with a valid token",
                          headers={"Retry-After": str(wait)})
        self._buckets[peer] = (tokens - 1, now)
        self._forget(now)

    def _forget(self, now: float) -> None:
        # Oldest first, stopping at the first one still refilling: O(1) per failure. Full
        # buckets behind it wait for a later pass; MAX_PEERS is what bounds the memory.
        while self._buckets:
            peer, (tokens, at) = next(iter(self._buckets.items()))
            if len(self._buckets) <= MAX_PEERS and tokens + (now - at) / REFILL_S < BURST:
                return
            del self._buckets[peer]
