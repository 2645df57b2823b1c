"""A throttle scenario for the engine's closed loop (engine/rate.py): one adaptive plan over the
lab's on-link hosts, run by a real worker and dispatcher in this process inside the scanner's
namespace, while the scanner's link is throttled and released on a schedule (impair.py). What
the loop did is sampled as it runs, for the adaptation test and bench/adapt.py's plot.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import NamedTuple

from netscand.engine import clock
from netscand.engine import plan as plans
from netscand.engine.guard import PlanGuard
from netscand.engine.probes import tcp_syn
from netscand.engine.ranges import of_cidrs
from netscand.engine.shm import R_PORT, S_OPEN, Result, Shared
from netscand.engine.worker import Worker
from netscand.lab import impair
from netscand.lab.errors import LabError
from netscand.lab.lab import Lab
from netscand.lab.namespaces import inside
from netscand.scan.dispatch import Dispatcher, shard_size

LAB_ONLY = of_cidrs(["198.18.0.0/15"])
TRACE_EVERY = 0.1  # seconds between two points of the trace
POLL_EVERY = 0.01  # seconds between two looks at the worker's results


class Phase(NamedTuple):
    at: float  # seconds after the scan's start
    limit_pps: int  # the throttle from then on; 0: none


class Point(NamedTuple):
    t: float  # seconds since the start
    rate: float  # probes/s the loop paces at
    sent: float  # probes/s really sent over the last TRACE_EVERY
    replies: float  # replies/s matched over the last TRACE_EVERY
    loss: float  # the loop's estimate
    limit_pps: int  # the throttle in force (0: none)


@dataclass
class Run:
    finished: bool
    seconds: float
    found: set[tuple[str, int]]  # open ports found
    truth: set[tuple[str, int]]  # the lab's open ports among those scanned
    trace: list[Point] = field(default_factory=list)
    sent: int = 0
    matched: int = 0


def run(lab: Lab, hosts: int, ports: Sequence[int], ceiling: float, phases: Sequence[Phase],
        timeout_s: float, retries: int = 3) -> Run:
    """Scan `hosts` on-link hosts of `lab` on `ports` adaptively under `ceiling` probes/s, the
    throttle following `phases`; lifted again however it ends."""
    chosen = [h for h in lab.truth["hosts"] if h["kind"] == "imitation" and not h["routed"]][:hosts]
    if len(chosen) < hosts:
        raise LabError(f"the lab has {len(chosen)} on-link imitation hosts, not {hosts}")
    wanted = set(ports)
    truth = {(h["ip"], p) for h in chosen for p in h["open"] if p in wanted}
    try:
        with inside(lab.scanner_ns):
            return _run(lab, chosen, tuple(ports), ceiling, list(phases), timeout_s, retries, truth)
    finally:
        impair.set_loss(lab.prefix, lab.truth["loss_pct"])


def _run(lab: Lab, chosen: list[dict], ports: tuple[int, ...], ceiling: float, phases: list[Phase],
         timeout_s: float, retries: int, truth: set[tuple[str, int]]) -> Run:
    guard = PlanGuard(LAB_ONLY, (), ceiling)
    shared = Shared(1)
    worker = Worker(shared, 0, guard, lambda: guard)
    worker._beat(clock.now())
    scanner = lab.truth["scanner"]
    ifindex = socket.if_nametoindex(scanner["ifname"])

    def make(slot: int, gen: int) -> plans.Plan:
        size = len(chosen) * len(ports)
        return plans.Plan(
            gen=gen, kind=tcp_syn.PROBE.kind, slot=slot, share=1, retries=retries, key=os.urandom(16),
            ifindex=ifindex, src_ip=int(IPv4Address(scanner["ip"])), src_mac=_mac(scanner["mac"]),
            sport_base=61440 + (slot << 10), rate=ceiling, timeout_init_ms=plans.TIMEOUT_INIT_MS,
            timeout_min_ms=plans.TIMEOUT_MIN_MS, timeout_max_ms=plans.TIMEOUT_MAX_MS,
            shard_size=shard_size(size, 1), hosts=tuple(int(IPv4Address(h["ip"])) for h in chosen),
            macs=tuple(_mac(h["mac"]) for h in chosen), ports=ports, flags=plans.FLAG_ADAPTIVE)

    dispatcher = Dispatcher(shared)
    results: list[Result] = []
    failures: list[str] = []
    sub = dispatcher.submit(make, results.append, failures.append)
    out = Run(False, 0.0, set(), truth)
    start = clock.now()
    next_poll = next_trace = start
    last = (start, 0, 0)
    limit = 0
    try:
        while not sub.finished and not failures:
            now = clock.now()
            if now - start > timeout_s:
                break
            while phases and now - start >= phases[0].at:
                limit = phases.pop(0).limit_pps
                impair.set_loss(lab.prefix, lab.truth["loss_pct"], limit)
            wait = worker.step(now)
            if now >= next_poll:
                dispatcher.poll()
                next_poll = now + POLL_EVERY
            if now >= next_trace:
                last = _trace(worker, out, start, now, last, limit)
                next_trace = now + TRACE_EVERY
            if wait > 0:
                worker._sleep(min(wait, worker.shards.next_deadline(now), POLL_EVERY))
    finally:
        for sock in worker.rx.values():
            sock.close()  # type: ignore[attr-defined]
    if failures:
        raise LabError(f"the scenario's plan failed: {failures[0]}")
    out.finished, out.seconds = sub.finished, clock.now() - start
    out.sent, out.matched = worker.shards.sent, worker.replies.matched
    out.found = {(str(IPv4Address(r.ip)), r.port) for r in results if r.kind == R_PORT and r.state == S_OPEN}
    return out


def _trace(worker: Worker, out: Run, start: float, now: float, last: tuple[float, int, int],
           limit: int) -> tuple[float, int, int]:
    """One point of the trace; the counts it is taken at, for the next one's differences."""
    at, sent, matched = last
    dt = max(now - at, 1e-3)
    states = [ps for ps in worker.plans.values() if ps.control is not None]
    rate = sum(ps.pacer.rate for ps in states)
    loss = max((ps.control.loss for ps in states if ps.control is not None), default=0.0)
    out.trace.append(Point(now - start, rate, (worker.shards.sent - sent) / dt,
                           (worker.replies.matched - matched) / dt, loss, limit))
    return now, worker.shards.sent, worker.replies.matched


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))

