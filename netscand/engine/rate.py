"""The closed-loop rate of an adaptive plan: how fast one worker sends its share of it.

A plan the user gave no rate is adaptive (plan.FLAG_ADAPTIVE): its rate (plan.rate / share)
is a ceiling, not a target. Each worker controls its own share from its own observations; a
plan's hosts are all behind one route (one gateway MAC for routed targets), so one slow
network's plan slows no other plan.

Signal: the reply ratio. Up to PER_BATCH probes of each batch a pass sends in the shard's keyed
order (a first pass, or a resumed one) are sampled: where their state bytes are in shared
memory and when they were sent. Once a sample's reply window (the plan's RTT timeout as measured
now, rtt.py) has passed, a probe is answered if any worker recorded a reply for it. Samples are
counted per epoch (the probes sent at one rate); an epoch ends once MIN_SAMPLES of its probes
have resolved (or EPOCH_MAX_S after its first sample, with MIN_LATE of them: slow rates), so
each decision is taken a reply window after the rate it judges, about once an RTT as TCP does
(RFC 5681). Retry passes are not sampled: they re-send only the probes that got no answer, most
of them to filtered ports and dead addresses, so their ratio is near 0 on any path and would
read as loss. Retries enter the loop only as load: they are paced at its rate, and their probes
count in the delivery rate a back-off falls to; what they recover is the scan's loss estimate
(coverage.py), not the loop's.

Baseline: the pooled reply ratio of the last WINDOW epochs that did not back off (their
answers over their samples: an estimate with WINDOW x MIN_SAMPLES samples, not the best of a
few noisy ones, which sits above the mean and reads noise as loss). Closed hosts and dead
addresses answer no more at a slow rate than at a fast one, so they are in it, and only what
goes missing on top of it is loss. An epoch is congested when its answers fall short of what
the baseline expects by more than Z standard deviations of the binomial count (with the
baseline's own uncertainty added) and by more than LOSS_MIN: sampling noise backs off about
once in a thousand epochs whatever the ratio, and an epoch that expects few answers (a sweep of
a sparse /16, a UDP scan) can show only a deep loss, so it is not read as one by chance. A loss
that does not fall when the rate does (random loss on a lossy link) backs off ABSORB epochs in
a row, and then those epochs become the baseline: a lossy link is scanned at the speed it
carries, and its losses are made up by retries, where nmap's loss-driven window collapses.

Rule, per epoch:
- congested: the rate falls to what got through, less a margin (DRAIN x sent x (1 - loss),
  `sent` the rate the epoch's probes really went at, idle gaps between its batches counted at
  most IDLE_GAP: BBR's delivery rate, Cardwell et al., "BBR: Congestion-Based Congestion
  Control", ACM Queue 2016), and at least by BETA (CUBIC's β, RFC 8312), never below FLOOR.
  Slow start ends.
- else, the RTT grown past twice its least value by more than DELAY_S: a queue is building
  (TCP Vegas, Brakmo & Peterson, IEEE JSAC 1995): the rate holds. The least value is the least
  smoothed RTT of the last MIN_RTT_S to 2 x MIN_RTT_S (BBR's min_rtt expires after 10 s), so a
  path that changed, or far hosts after near ones, does not hold the rate for ever.
- else, clean: slow start doubles it (RFC 5681 §3.1) until the first congestion; after it, it
  grows by a factor that widens with each clean epoch in a row, 1 + n x GROWTH up to 2: slow
  near the rate that last lost, then faster the longer none is lost (the convex probing of
  CUBIC, RFC 8312 §4, and BBR's probing for more bandwidth), so it is back at the ceiling
  within about ten epochs of a throttle lifting, not minutes as with additive steps.
A plan starts at INITIAL probes/s in all (a rate a branch office's router carries; nmap's scan
engine too starts at a low congestion window and opens it), or, when the worker ran a plan on
the same route within the last MEMORY_S (Routes), at the rate that plan's loop last set; it
never exceeds the ceiling.

Canary probes (resent SYNs to ports found open, whose answers measure loss without a baseline)
are not sent: the windowed baseline stands in for them.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import NamedTuple

from netscand.engine.shm import SHARD_KEY, SHARD_STATES

INITIAL = 5_000.0  # probes/s for a whole plan at its start (split among its workers)
FLOOR = 50.0  # probes/s a worker's share never falls below: the loop must keep measuring
PER_BATCH = 4  # probes of a batch sampled at most: a few more order() calls per 64 probes
MIN_SAMPLES = 128  # resolved samples that end an epoch
MIN_LATE = 8  # ... or as few as this once EPOCH_MAX_S passed
EPOCH_MAX_S = 2.0
SAMPLE_CAP = 4096  # batches pending at most: memory stays bounded whatever the rate and timeout
WINDOW = 8  # epochs that did not back off, whose pooled ratio is the baseline
Z = 3.0  # standard deviations of shortfall that read as loss, not noise
LOSS_MIN = 0.2  # ... and at least this share of the expected answers missing: on a path where
# nearly every probe is answered (closed ports reset), a few late replies on a loaded core are no
# congestion
ABSORB = 4  # congested epochs in a row after which their ratio is the baseline: a lossy link
BETA = 0.7
DRAIN = 0.9
GROWTH = 0.125
# A standing queue this long is a path's: RTTs are measured in 4 ms send ticks (clock.py), and a
# worker sharing its core with the others reads replies some ms late, which is no queue in the
# path (at 8 ms, two workers on two loaded cores held the rate at half the ceiling).
DELAY_S = 0.05
MIN_RTT_S = 10.0  # the least RTT is the least of the last 10 to 20 s
# A gap between two batches longer than this is the plan idling (waiting for replies, a grant, a
# retry, its next shard), not its pace: a Pacer's burst is at most 20 ms of sending.
IDLE_GAP = 0.02
ROUTES = 64  # routes a worker remembers a rate for
MEMORY_S = 60.0  # how long a route's last rate is believed


class Sample(NamedTuple):
    sent: float  # when its batch was sent
    epoch: int
    view: memoryview  # its shard slot
    key: tuple[int, int]  # (plan generation, shard) the slot held when it was sent
    offs: Sequence[int]  # the sampled probes' state byte offsets in the shard


class Decision(NamedTuple):
    rate: float  # probes/s, this worker's share
    reason: str  # "slow_start", "clean", "loss", "delay"
    ratio: float  # the epoch's reply ratio
    loss: float  # estimated against the baseline; 0 unless the shortfall is beyond noise


class Learned(NamedTuple):
    rate: float  # probes/s for a whole plan (this worker's share as its loop last set it x share)
    slow_start: bool
    at: float


class Routes:
    """What the loops of one worker learned per route, so the next plan on it (the next group,
    discovery then ports, a max_hosts batch) starts at the rate the last one reached instead of
    INITIAL. Bounded: the ROUTES most recently used."""

    def __init__(self) -> None:
        self.learned: OrderedDict[object, Learned] = OrderedDict()

    def get(self, route: object, now: float) -> Learned | None:
        learned = self.learned.get(route)
        return learned if learned is not None and now - learned.at <= MEMORY_S else None

    def put(self, route: object, learned: Learned) -> None:
        self.learned[route] = learned
        self.learned.move_to_end(route)
        while len(self.learned) > ROUTES:
            self.learned.popitem(last=False)


class RateControl:
    """One worker's control of its share of one adaptive plan."""

    def __init__(self, ceiling: float, share: int, learned: Learned | None = None) -> None:
        self.ceiling, self.share = ceiling, max(share, 1)
        start = (INITIAL if learned is None else learned.rate) / self.share
        self.rate = max(min(ceiling, start), min(ceiling, FLOOR))
        self.slow_start = True if learned is None else learned.slow_start
        self.epoch, self.started = 0, -1.0  # started: the epoch's first sample
        self.samples: deque[Sample] = deque()
        self.answered = self.resolved = 0
        self.sent, self.busy, self.last = 0, 0.0, -1.0  # probes sent, over `busy` seconds
        self.window: deque[tuple[int, int]] = deque(maxlen=WINDOW)  # (answered, resolved)
        self.lossy: list[tuple[int, int]] = []  # the congested epochs in a row
        self.clean = 0  # clean epochs in a row since slow start or the last loss
        self.min_rtt, self.min_rtt_old, self.min_rtt_at = math.inf, math.inf, -math.inf
        self.loss = 0.0

    def batch(self, now: float, sent: int, view: memoryview, offs: Sequence[int]) -> None:
        """`sent` probes just went; `offs`, the offsets of some of them in the states of shard
        slot `view`, are watched for their replies (empty: a pass not sampled)."""
        if self.last >= 0:
            self.busy += min(now - self.last, IDLE_GAP)
        self.last = now
        self.sent += sent
        if not offs:
            return
        if self.started < 0:
            self.started = now
        if len(self.samples) < SAMPLE_CAP:
            self.samples.append(Sample(now, self.epoch, view, SHARD_KEY.unpack_from(view, 0), offs))

    def update(self, now: float, timeout: float, srtt: float | None) -> Decision | None:
        """Resolve the samples whose reply window (`timeout`) has passed; at an epoch's end,
        the new rate."""
        samples, sent_by = self.samples, now - timeout
        while samples and samples[0].sent <= sent_by:
            s = samples.popleft()
            # A sample of an older epoch judges a rate no longer sent; one whose shard slot
            # moved on to another shard can no longer tell.
            if s.epoch == self.epoch and SHARD_KEY.unpack_from(s.view, 0) == s.key:
                view = s.view
                self.resolved += len(s.offs)
                self.answered += sum(view[SHARD_STATES + off] != 0 for off in s.offs)
        if srtt is not None:
            self._least_rtt(now, srtt)
        late = self.started >= 0 and now - self.started >= EPOCH_MAX_S
        if self.resolved < MIN_SAMPLES and not (late and self.resolved >= MIN_LATE):
            return None
        return self._decide(srtt)

    def _least_rtt(self, now: float, srtt: float) -> None:
        """The least smoothed RTT of this MIN_RTT_S period and the last one (a windowed min)."""
        if now - self.min_rtt_at >= MIN_RTT_S:
            self.min_rtt_old, self.min_rtt, self.min_rtt_at = self.min_rtt, srtt, now
        self.min_rtt = min(self.min_rtt, srtt)

    def _congested(self) -> float:
        """The epoch's loss against the baseline, or 0 when its shortfall is within noise."""
        if not self.window:
            return 0.0
        base_answered = sum(a for a, _ in self.window)
        base_n = sum(n for _, n in self.window)
        p = (base_answered + 1) / (base_n + 2)  # never 0 nor 1: one miss on a clean path is not loss
        n, expected = self.resolved, self.resolved * p
        sd = math.sqrt(n * p * (1 - p) * (1 + n / base_n))
        loss = 1 - self.answered / expected
        return loss if self.answered < expected - Z * sd and loss > LOSS_MIN else 0.0

    def _decide(self, srtt: float | None) -> Decision:
        ratio, epoch = self.answered / self.resolved, (self.answered, self.resolved)
        self.loss = self._congested()
        self.clean += 1
        if self.loss:
            self.slow_start, self.clean, reason = False, 0, "loss"
            self.lossy.append(epoch)
            if len(self.lossy) >= ABSORB:  # not cured by a slower rate: the path's own loss
                self.window.clear()
                self.window.extend(self.lossy)
                self.lossy.clear()
            sent = self.sent / max(self.busy, 1e-3)
            rate = min(self.rate * BETA, sent * (1 - self.loss) * DRAIN)
        else:
            self.window.append(epoch)
            self.lossy.clear()
            if srtt is not None and srtt > 2 * min(self.min_rtt, self.min_rtt_old) + DELAY_S:
                self.clean, rate, reason = 0, self.rate, "delay"
            elif self.slow_start:
                rate, reason = self.rate * 2, "slow_start"
            else:
                rate, reason = self.rate * min(1 + self.clean * GROWTH, 2), "clean"
        self.rate = min(max(rate, FLOOR), self.ceiling)
        self.epoch += 1
        self.started, self.answered, self.resolved, self.sent, self.busy = -1.0, 0, 0, 0, 0.0
        return Decision(self.rate, reason, ratio, self.loss)

    def learned(self, now: float) -> Learned:
        """What the next plan on this route starts from: the path carried this plan's workers'
        shares, whatever the next one's split."""
        return Learned(self.rate * self.share, self.slow_start, now)
