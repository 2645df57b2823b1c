"""One scan's life in the control process: its planner (planner.py) routes the targets into feeds
of work; this runs them, feeding the engine one plan per slot as slots free up, collecting the
answers, and handing each finished group back to the planner for what follows (ARP leads to a
port scan, a ping sweep to a port scan of the hosts that answered).

So a /8 costs what its ranges do, and memory grows with the hosts that answer, never with the
addresses asked for (see work.py).

It never blocks: the caller (the one-shot command's loop, or the daemon's event loop) calls
dispatcher.poll() when a result ring wakes it, then step() here.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from functools import partial

from netscand.engine import plan as plans
from netscand.engine.shm import R_DONE, R_HOST, R_MARK, R_PORT, R_TALLY, Result
from netscand.netinfo import NetInfo
from netscand.scan.dispatch import Dispatcher, Submitted
from netscand.scan.planner import Planner
from netscand.scan.result import ScanResult
from netscand.scan.resume import Checkpoint, Mismatch
from netscand.scan.spec import ScanSpec
from netscand.scan.work import Feed, Work

Handler = Callable[[Work, Result], None]


class ScanRun:
    def __init__(self, spec: ScanSpec, dispatcher: Dispatcher, net: NetInfo | None = None,
                 checkpoint: Checkpoint | None = None) -> None:
        self.spec = spec
        self.dispatcher = dispatcher
        self.checkpoint = checkpoint  # None: the scan cannot resume after a restart (no store, or paced)
        self.result = ScanResult()
        self.planner = Planner(spec, net or NetInfo(), dispatcher.shared.workers)
        self.queue: deque[Work] = deque()  # the group being started, cut from the first feed
        self.running: list[tuple[Submitted, Work, float]] = []  # with its start time
        self.groups = 0
        self.group_left: dict[int, int] = {}  # group -> works not finished
        self.found: dict[int, list[int]] = {}  # group -> hosts its ARP or ping answers proved up
        self.done_probes = 0
        self.cancelled = False
        self.failure: str | None = None  # why the engine failed one of its plans, which ends the scan

    @property
    def feeds(self) -> deque[Feed]:
        return self.planner.feeds

    @property
    def planned(self) -> int:
        return self.planner.planned

    @property
    def errors(self) -> list[str]:
        """Targets the scan could not reach: no route, a gateway that does not answer ARP."""
        return self.planner.errors

    @property
    def done(self) -> bool:
        return not self.queue and not self.running and not self.feeds

    def step(self) -> None:
        """Retire finished or timed-out plans, then start the next group. One group runs at a
        time, but beside another's tail (_tail_room) or paced plans (_paced_room): the scan's
        rate is split among its plans, which the workers send side by side (and beside other
        scans' plans), and every worker shares each plan."""
        now = time.monotonic()
        self._retire_finished(now)
        self._start(now)

    def _retire_finished(self, now: float) -> None:
        # A paced plan is not timed out by wall time: it lasts its hosts' ports x gap, and its
        # budget, in probes, gives a silent host up in the engine (Plan.silent_probes).
        budget = self.spec.host_timeout_s
        for item in list(self.running):
            sub, work, started = item
            timed_out = budget is not None and work.port_scan and work.pacing is None and now - started > budget
            if not (sub.finished or timed_out):
                continue
            self.running.remove(item)
            self.done_probes += sub.plan.size
            if timed_out and not sub.finished:
                self.dispatcher.cancel(sub)
                self.result.timed_out(sub.plan.hosts)
            self._retire(work)

    def _start(self, now: float) -> None:
        while not self.cancelled and self.dispatcher.free_slot is not None:
            if not self.queue:
                if not self.feeds or (self.running and not (self._tail_room() or self._paced_room())):
                    break
                self._next_group()
            work = self.queue.popleft()
            handler = self._on_discovery if work.discovery else self._on_result
            cp = self.checkpoint
            resumed = cp.submission(work) if cp else {}
            try:
                sub = self.dispatcher.submit(partial(self._plan, work), partial(self._on_record, handler, work),
                                             self._on_failure, **resumed)
            except Mismatch as exc:
                self._on_failure(str(exc))
                return
            self.running.append((sub, work, now))
            for r in cp.replay(work) if cp else ():
                handler(work, r)
            if sub.finished:  # done before a restart: what it leads to is planned now, not a tick later
                self._retire_finished(now)

    def _tail_room(self) -> bool:
        """Whether the next group may start while the running one finishes. A group's last
        shards end in a tail that sends little: the reply timeout waited out, then retries of
        what went unanswered; with one group at a time the workers idle through it before every
        group (each plan of hosts after the last, the ping sweep of the next route). Once every
        running work is an adaptive port scan with all its shards handed out, the next group
        starts beside that tail: an adaptive plan's rate is a ceiling its own loop and the
        engine's rate (the workers' ceiling over all plans) hold, not a rate the user chose, so
        two groups sending at once exceed nothing promised; a scan with a rate of its own keeps
        one group at a time, so that rate is never doubled. Only port scans: a port scan leads
        to nothing, so at most one group that feeds the planner (an ARP, a ping sweep) runs at
        a time, and the groups are cut in the same order in every life of the scan, which is
        how a resumed scan finds its plans (resume.plan_no)."""
        return all(work.port_scan and work.pacing is None and sub.plan.adaptive and not sub.pending
                   for sub, work, _ in self.running)

    def _paced_room(self) -> bool:
        """Whether a group may start beside the running ones, with the feed it comes from moved
        first. One group at a time is the rule (the running group has the scan's rate), but a
        paced group uses only its hosts' share of it (one probe per host per gap), and what
        waited behind it would wait its hours for nothing: the ARP (or ping sweep) that the
        on-link hosts' paced scan waits for, or the hosts behind another route. So while every
        running work is a paced port scan, the first feed that fits starts (_fits_beside)."""
        if any(work.pacing is None or not work.port_scan for _, work, _ in self.running):
            return False
        for i, feed in enumerate(self.feeds):
            if self._fits_beside(feed):
                if i:
                    del self.feeds[i]
                    self.feeds.appendleft(feed)
                return True
        return False

    def _fits_beside(self, feed: Feed) -> bool:
        """An unpaced feed of a paced spec is its ARP or ping sweep: brief, and the paced scans
        of the hosts it finds follow it. A paced one fits while the hosts in flight stay within
        what the rate keeps at their gap (ScanSpec.paced_hosts) and none of its hosts is running
        (a paced spec's UDP feed follows its TCP feed over the same hosts: one probe per gap)."""
        if feed.pacing is None:
            return True
        running = {id(work.hosts): work.hosts for _, work, _ in self.running}.values()
        upcoming = feed.upcoming()
        if sum(t.count for t in running) + upcoming.count > self.spec.hosts_per_plan(self.dispatcher.shared.workers):
            return False
        return not any(upcoming.overlaps(t) for t in running)

    def _next_group(self) -> None:
        self.groups += 1
        works = self.planner.cut(self.groups)
        self.group_left[self.groups] = len(works)
        self.queue.extend(works)

    def _plan(self, work: Work, slot: int, gen: int) -> plans.Plan:
        hosts = tuple(work.hosts.addresses())
        macs = work.macs(hosts, self.result.hosts)
        if work.port_scan:
            self.result.probed(hosts, len(work.ports), work.probe.protocol)
        fixed = self.checkpoint.fixed(work, hosts) if self.checkpoint else None
        plan = work.plan(hosts, macs, self.spec, self.dispatcher.shared.workers, slot, gen, fixed)
        if self.checkpoint:
            self.checkpoint.planned(work, hosts, plan)
        return plan

    def _on_record(self, handler: Handler, work: Work, r: Result) -> None:
        """Every record of a plan: kept in the checkpoint (a position only there), then handled."""
        if self.checkpoint:
            if r.kind == R_MARK:
                self.checkpoint.mark(work, r)
                return
            if not self._known_up(work, r):
                self.checkpoint.record(work, r)
        if r.kind != R_MARK:
            handler(work, r)

    def _known_up(self, work: Work, r: Result) -> bool:
        """A ping answer from a host already up: it proves nothing a replay needs, and where every
        address answers (a sweep of 127/8) journaling each of a host's answers would triple what the
        checkpoint writes. An ARP answer (R_HOST) is kept: it may bring the MAC."""
        h = self.result.hosts.get(r.ip) if work.discovery and r.kind in (R_PORT, R_TALLY) else None
        return h is not None and h.up

    def _retire(self, work: Work) -> None:
        self.group_left[work.group] -= 1
        if not self.group_left[work.group]:
            del self.group_left[work.group]
            self.planner.finished(work, sorted(self.found.pop(work.group, ())), self.result.hosts)

    def _on_discovery(self, work: Work, r: Result) -> None:
        # Any answer to a ping proves the host up; what it says about port 443 or 80 is not a
        # port scan result.
        if r.kind == R_DONE:
            self.result.shard_done(r)
        elif r.kind in (R_HOST, R_PORT, R_TALLY) and self.result.mark_up(r.ip):
            self.found.setdefault(work.group, []).append(r.ip)

    def _on_result(self, work: Work, r: Result) -> None:
        if r.kind == R_DONE:
            self.result.shard_done(r)
            return
        if self.planner.gateways.answered(r, self.spec.targets):
            return
        states = work.probe.port_states
        if self.result.add(r, len(work.ports) if states else 0, work.probe.protocol) and not states:
            self.found.setdefault(work.group, []).append(r.ip)

    def _on_failure(self, reason: str) -> None:
        # One plan lost is a result with holes nobody can see: the whole scan fails instead.
        if self.failure is None:
            self.failure = reason
            self.cancel()

    def cancel(self) -> None:
        self.cancelled = True
        self.queue.clear()
        self.feeds.clear()
        for sub, _, _ in self.running:
            self.dispatcher.cancel(sub)
        self.running.clear()

    def progress(self) -> tuple[int, int]:
        """(probes done, probes planned) counting finished shards of running plans, and a paced
        plan's probes by its time: its shards all send for its whole duration, so none finishes
        before its end."""
        now = time.monotonic()
        running = sum(self._running_done(sub, work, now - started) for sub, work, started in self.running)
        return min(self.done_probes + running, self.planned), self.planned

    def remaining_s(self) -> float | None:
        """A paced scan's time left, from its pacing: its running group's plans to their end,
        then each group still to cut. None until a paced plan runs, and for an unpaced scan,
        whose time follows its probes done."""
        now = time.monotonic()
        ends = [self._paced_left_s(sub.plan, work, now - started)
                for sub, work, started in self.running if work.pacing is not None]
        ends += [work.paced_duration_s(self.spec.udp_sends) for work in self.queue if work.pacing is not None]
        if not ends:
            return None
        return max(0.0, *ends) + sum(feed.paced_s() for feed in self.feeds)

    def _paced_left_s(self, plan: plans.Plan, work: Work, elapsed: float) -> float:
        """A running paced plan's time left. Its first round lasts about its paced duration, and
        is over by a gap, the spread of its jitter and a reply timeout later (a host's first probe
        comes in its second gap; the jitters of n ports sum to n x their mean, give or take
        sqrt(n) jitters (3.5 sigma); its last probe's replies are waited out). A TCP plan still
        running after that has hosts in their retry rounds of the ports they left unanswered,
        each paced like the first and as long at most: that bound is its time left then, as the
        engine does not say how many ports a round still has. A UDP plan's duration counts its
        retries already."""
        first = work.paced_duration_s(self.spec.udp_sends)
        round_s = first + (plan.gap_ms + plan.jitter_ms * math.sqrt(len(plan.ports)) + plan.timeout_max_ms) / 1000
        if work.probe.protocol == "udp" or elapsed <= round_s:
            return max(0.0, first - elapsed)
        return max(0.0, round_s * (1 + plan.retries) - elapsed)

    def _running_done(self, sub: Submitted, work: Work, elapsed: float) -> int:
        if work.pacing is None:
            in_hand = self.checkpoint.in_hand(work) if self.checkpoint else 0
            return min(len(sub.done) * sub.plan.shard_size + in_hand, sub.plan.size)
        share = min(elapsed / work.paced_duration_s(self.spec.udp_sends), 1)
        return max(len(sub.done) * sub.plan.shard_size, int(sub.plan.size * share))
