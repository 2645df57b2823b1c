"""The order and times of a paced shard's probes: each host at most one probe per gap.

A paced plan's shard holds whole hosts (plan.py's host-major layout), so the worker sending it
owns each of its hosts' gaps. Per host: its ports in an order of its own (a keyed Feistel
permutation), its first probe at a keyed-random phase within the second gap after the shard
starts (so the hosts' probes interleave instead of marching in step), each next one gap_ms +
uniform[0, jitter_ms) after the last. Not within the first gap: a shard may be a re-issue of
one whose worker died, which may have probed any of its hosts just before, and a worker cannot
tell a re-issue from a first issue (a job says neither); one gap of delay at the start keeps
every host's gap across the restart, and costs nothing beside a paced pass's length.

A retry round, of the host's ports still unanswered, starts once its first round is sent and
its reply timeout has passed, paced like the first (no burst of retransmissions, no gap below
gap_ms ever), in a keyed order of its own.

The per-host budget of a paced scan is counted in probes, not time (a host behind a DROP
firewall may have its few open ports anywhere in a 67-minute pass): the first round sends the
plan's first silent_probes ports first (the scan layer lists its ports most frequently open
first), in a keyed order among themselves, then the rest; a host that has answered nothing at
all once those probes' reply timeout has passed gets no more (0: every host is probed to its
end). An answer to any port counts: a host that answers is up, whatever port it was.

The schedule is a heap of (due time, host): the worker sleeps until the first is due, and the
plan's token bucket still caps the total rate (a host whose turn the bucket delays only waits
longer than its gap).

Each host counts what it cost (coverage.py): probes sent, those of its retry rounds, and its
answered ports when its first round ended; a count per probe is affordable here, where a host
gets one probe per gap.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from hashlib import blake2b

from netscand.engine.coverage import Counts
from netscand.engine.permutation import Permutation
from netscand.engine.plan import Plan


class _Host:
    """One host's progress: the round it is in, where in it, and when it was last probed."""

    __slots__ = ("cut", "first", "last", "order", "pos", "retried", "round", "sent")

    def __init__(self, order: Callable[[int], int]) -> None:
        self.order, self.pos, self.round = order, 0, 0  # every round goes over all its ports
        self.last = -1.0  # no probe yet
        self.cut = -1.0  # when the last of its silent probes went (not yet)
        self.sent = self.retried = 0  # probes sent, and those of them in retry rounds
        self.first = -1  # ports answered when its first round ended (-1: it has not, or had no retry)


class Schedule:
    """Which (host, port) of a paced shard goes next, and when (module docstring)."""

    def __init__(self, plan: Plan, shard: int, states: memoryview, now: float) -> None:
        """`states` are the shard's state bytes (shared memory: answers land there)."""
        self.plan = plan
        self.states = states
        self.np = len(plan.ports)
        start, end = plan.shard_range(shard)
        self.first_host = start // self.np
        count = (end - start) // self.np
        self.gap, self.jitter = plan.gap_ms / 1000, plan.jitter_ms / 1000
        self.silent = plan.silent_probes
        self.rng = random.Random(blake2b(plan.key + b"jitter" + shard.to_bytes(4, "big")).digest())
        self.hosts = [_Host(self._order(self.first_host + k)) for k in range(count)]
        self.heard = [False] * count  # any answer at all, once seen (never unset)
        start = now + self.gap  # past any probe of a dead predecessor's (module docstring)
        self.heap = [(start + self._phase(self.first_host + k), k) for k in range(count)]
        heapq.heapify(self.heap)
        self.deadline = now  # when the last probe's replies are waited out, of hosts done

    def _order(self, host: int) -> Callable[[int], int]:
        """The host's first round: its silent probes' ports in a keyed order, then the rest."""
        seed, s = self.plan.key + b"host" + host.to_bytes(4, "big"), self.silent
        if not 0 < s < self.np:
            return Permutation(self.np, seed)
        head, tail = Permutation(s, seed + b"head"), Permutation(self.np - s, seed + b"tail")
        return lambda i: head(i) if i < s else s + tail(i - s)

    def _phase(self, host: int) -> float:
        digest = blake2b(host.to_bytes(4, "big"), key=self.plan.key, digest_size=8, person=b"phase").digest()
        return int.from_bytes(digest, "big") / 2**64 * self.gap

    def next_due(self) -> float:
        """When a host is next due; when all are done, when the last replies are waited out."""
        return self.heap[0][0] if self.heap else self.deadline

    def finished(self, now: float) -> bool:
        return not self.heap and now >= self.deadline

    def pop(self, now: float, timeout: float) -> tuple[int, int] | None:
        """The (host index, port index) to send now, taken as sent now; None if no host is due.
        `timeout` is the plan's reply timeout now, in seconds."""
        while self.heap and self.heap[0][0] <= now:
            k = heapq.heappop(self.heap)[1]
            host = self.hosts[k]
            if self._silenced(k, host, now, timeout):
                self._done(host, timeout)
                continue
            off = self._next_port(k, host)
            if off is None and now < host.last + timeout:  # its round is sent: its replies first
                heapq.heappush(self.heap, (host.last + timeout, k))
                continue
            # A new round may find every port answered since the check (a late reply): done.
            if off is None and (not self._next_round(k, host) or (off := self._next_port(k, host)) is None):
                self._done(host, timeout)
                continue
            self._sent(k, host, now)
            return self.first_host + k, off
        return None

    def _row(self, k: int) -> memoryview:
        return self.states[k * self.np : (k + 1) * self.np]

    def _silenced(self, k: int, host: _Host, now: float, timeout: float) -> bool:
        """Its silent probes are sent and waited out, and nothing at all has answered."""
        if host.cut < 0 or self.heard[k] or now < host.cut + timeout:
            return False
        self.heard[k] = bytes(self._row(k)).count(0) < self.np  # counted in C: a row may be 65535 ports
        return not self.heard[k]

    def _next_port(self, k: int, host: _Host) -> int | None:
        """The next port of the host's round; a retry round skips those answered since it began."""
        states, base = self.states, k * self.np
        while host.pos < self.np:
            off = host.order(host.pos)
            host.pos += 1
            if host.round == 0 or not states[base + off]:
                return off
        return None

    def _next_round(self, k: int, host: _Host) -> bool:
        """Start the host's retry round of what is still unanswered, if it has one left: all its
        ports again in a keyed order of the round's own (_next_port skips the answered ones), not
        the unanswered ones in port order, which would march up the host's ports."""
        silent = bytes(self._row(k)).count(0)
        if host.round >= self.plan.retries or silent == 0:
            return False
        if host.round == 0:
            host.first = self.np - silent
        host.round += 1
        seed = self.plan.key + b"host" + (self.first_host + k).to_bytes(4, "big") + bytes([host.round])
        host.order, host.pos = Permutation(self.np, seed), 0
        return True

    def _sent(self, k: int, host: _Host, now: float) -> None:
        if host.round == 0 and host.pos == self.silent:
            host.cut = now
        host.sent += 1
        host.retried += host.round > 0
        host.last = now
        heapq.heappush(self.heap, (now + self.gap + self.rng.random() * self.jitter, k))

    def _done(self, host: _Host, timeout: float) -> None:
        if host.last >= 0:
            self.deadline = max(self.deadline, host.last + timeout)

    def counts(self, k: int) -> Counts:
        """What host k (its index in the shard) cost and earned so far (coverage.py)."""
        host, row = self.hosts[k], bytes(self._row(k))
        answered = self.np - row.count(0)
        first = host.first if host.first >= 0 else answered
        return Counts(host.sent, answered, host.retried, answered - first)
