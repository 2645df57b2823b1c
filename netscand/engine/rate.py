"""The closed-loop rate of an adaptive plan: how fast one worker sends its share of it.

A plan the user gave no rate is adaptive (plan.FLAG_ADAPTIVE): its rate (plan.rate / share)
is a ceiling, not a target. Each worker controls its own share from its own observations; a
plan's hosts are all behind one route (one gateway MAC for routed targets), so one slow
network's plan slows no other plan.

Signal: the reply ratio. One probe of each batch sent is sampled: where its state byte is in
shared memory and when it was sent. Once its reply window (the plan's RTT timeout as measured
now, rtt.py) has passed, the sample is answered if any worker recorded a reply for it. Samples are
counted per epoch (the probes sent at one rate); an epoch ends once MIN_SAMPLES of its samples
have resolved (or EPOCH_MAX_S passed with MIN_LATE of them: slow rates), so each decision is
taken a reply window after the rate it judges, about once an RTT as TCP does (RFC 5681).
A retried probe is sampled as any other: the retries a path needs lower the ratio the same way.

Loss is the epoch's ratio against the best ratio of the last WINDOW epochs (a windowed max as
BBR keeps its bandwidth estimate, Cardwell et al., "BBR: Congestion-Based Congestion Control",
ACM Queue 2016): closed hosts and dead addresses answer no more at a slow rate than at a fast
one, so they are in the baseline, and only what goes missing on top of it is loss. A loss that
does not fall when the rate does (random loss on a lossy link) is in the baseline within WINDOW
epochs too, and stops holding the rate down: a lossy link is scanned at the speed it carries,
and its losses are made up by retries, where nmap's loss-driven window collapses.

An epoch whose baseline expects fewer than MIN_EXPECTED answers among its samples judges no
loss: a sweep of a sparse /16 or a UDP scan (most probes unanswered whatever the rate) would
read sampling noise as loss and collapse. Such a scan climbs blind to its ceiling, as masscan
sends; canary probes (below) are what would measure its path.

Rule, per epoch:
- loss above LOSS_BACKOFF: congestion. The rate falls to what got through, less a margin
  (DRAIN x sent x (1 - loss), `sent` the rate the epoch's probes really went at: BBR's delivery
  rate), and at least by BETA (CUBIC's β, RFC 8312), never below FLOOR. Slow start ends.
- else, the RTT grown past twice its least value by more than DELAY_S: a queue is building
  (TCP Vegas, Brakmo & Peterson, IEEE JSAC 1995): the rate holds.
- else, clean: slow start doubles it (RFC 5681 §3.1) until the first congestion; after it, it
  grows by a factor that widens with each clean epoch in a row, 1 + n x GROWTH up to 2: slow
  near the rate that last lost, then faster the longer none is lost (the convex probing of
  CUBIC, RFC 8312 §4, and BBR's probing for more bandwidth), so it is back at the ceiling
  within about ten epochs of a throttle lifting, not minutes as with additive steps.
It starts at INITIAL probes/s for the whole plan (a rate a branch office's router carries; nmap's
scan engine too starts at a low congestion window and opens it) and never exceeds the ceiling.

Canary probes (resent SYNs to ports found open, whose answers measure loss without a baseline)
are not sent: the windowed baseline stands in for them.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from netscand.engine.shm import SHARD_KEY, SHARD_STATES

INITIAL = 5_000.0  # probes/s for a whole plan at its start (split among its workers)
FLOOR = 50.0  # probes/s a worker's share never falls below: the loop must keep measuring
MIN_SAMPLES = 48  # resolved samples that end an epoch
MIN_LATE = 8  # ... or as few as this once EPOCH_MAX_S passed
EPOCH_MAX_S = 2.0
SAMPLE_CAP = 4096  # samples pending at most: memory stays bounded whatever the rate and timeout
WINDOW = 8  # epochs the best reply ratio is kept over
MIN_EXPECTED = 24  # answers the baseline must expect of an epoch's samples for it to judge loss
LOSS_BACKOFF = 0.2  # a fifth of the expected replies missing: sampling noise and 5 % random
# loss each way stay well below it, an overloaded rate limiter or queue does not
BETA = 0.7
DRAIN = 0.9
GROWTH = 0.125
# A standing queue this long is a path's: RTTs are measured in 4 ms send ticks (clock.py), and a
# worker sharing its core with the others reads replies some ms late, which is no queue in the
# path (at 8 ms, two workers on two loaded cores held the rate at half the ceiling).
DELAY_S = 0.05


class Sample(NamedTuple):
    sent: float  # when it was sent
    epoch: int
    view: memoryview  # its shard slot
    key: tuple[int, int]  # (plan generation, shard) the slot held when it was sent
    off: int  # its state byte's offset in the shard


class Decision(NamedTuple):
    rate: float  # probes/s, this worker's share
    reason: str  # "slow_start", "clean", "loss", "delay"
    ratio: float  # the epoch's reply ratio
    loss: float  # estimated against the windowed best ratio


class RateControl:
    """One worker's control of its share of one adaptive plan."""

    def __init__(self, ceiling: float, share: int) -> None:
        self.ceiling = ceiling
        self.rate = max(min(ceiling, INITIAL / max(share, 1)), min(ceiling, FLOOR))
        self.slow_start = True
        self.epoch, self.started = 0, -1.0
        self.samples: deque[Sample] = deque()
        self.answered = self.resolved = 0
        self.sent = 0  # probes sent in this epoch
        self.best: deque[float] = deque(maxlen=WINDOW)
        self.clean = 0  # clean epochs in a row since slow start or the last loss
        self.min_rtt = float("inf")
        self.loss = 0.0

    def sample(self, now: float, view: memoryview, off: int, batch: int) -> None:
        """A batch of `batch` probes just sent, one of them from shard slot `view` at offset
        `off` of its states."""
        if self.started < 0:
            self.started = now
        self.sent += batch
        if len(self.samples) < SAMPLE_CAP:
            self.samples.append(Sample(now, self.epoch, view, SHARD_KEY.unpack_from(view, 0), off))

    def update(self, now: float, timeout: float, srtt: float | None) -> Decision | None:
        """Resolve the samples whose reply window (`timeout`) has passed; at an epoch's end,
        the new rate."""
        samples, sent_by = self.samples, now - timeout
        while samples and samples[0].sent <= sent_by:
            s = samples.popleft()
            # A sample of an older epoch judges a rate no longer sent; one whose shard slot
            # moved on to another shard can no longer tell.
            if s.epoch == self.epoch and SHARD_KEY.unpack_from(s.view, 0) == s.key:
                self.resolved += 1
                self.answered += s.view[SHARD_STATES + s.off] != 0
        if srtt is not None:
            self.min_rtt = min(self.min_rtt, srtt)
        late = self.started >= 0 and now - self.started >= EPOCH_MAX_S
        if self.resolved < MIN_SAMPLES and not (late and self.resolved >= MIN_LATE):
            return None
        return self._decide(now, srtt)

    def _decide(self, now: float, srtt: float | None) -> Decision:
        ratio = self.answered / self.resolved
        self.best.append(ratio)
        base = max(self.best)
        judged = base * self.resolved >= MIN_EXPECTED
        self.loss = 1 - ratio / base if judged else 0.0
        self.clean += 1
        if self.loss > LOSS_BACKOFF:
            self.slow_start, self.clean, reason = False, 0, "loss"
            sent = self.sent / max(now - self.started, 1e-3)
            rate = min(self.rate * BETA, sent * (1 - self.loss) * DRAIN)
        elif srtt is not None and srtt > 2 * self.min_rtt + DELAY_S:
            self.clean, rate, reason = 0, self.rate, "delay"
        elif self.slow_start:
            rate, reason = self.rate * 2, "slow_start"
        else:
            rate, reason = self.rate * min(1 + self.clean * GROWTH, 2), "clean"
        self.rate = min(max(rate, FLOOR), self.ceiling)
        self.epoch += 1
        self.started, self.answered, self.resolved, self.sent = now, 0, 0, 0
        return Decision(self.rate, reason, ratio, self.loss)
