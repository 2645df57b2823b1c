"""A real Worker (over socket pairs, tests/engine/links.py) given every shard of a paced plan:
all of them send at once, none held behind another (a paced pass lasts the whole scan), each
host at its gap, and the worker finishes and tallies every shard."""

from __future__ import annotations

import time
from collections import defaultdict

import dpkt

from netscand.engine import clock
from netscand.engine import plan as plans
from netscand.engine.probes import tcp_syn
from netscand.engine.shm import JOB, JOB_SHARD, R_DONE, Result, Shared
from netscand.engine.worker import Worker
from tests.engine.links import PairLink
from tests.engine.solo import GUARD

GAP_MS = 60
HOSTS = tuple(0xC6120010 + i for i in range(6))


def paced_plan() -> plans.Plan:
    return plans.Plan(gen=21, kind=tcp_syn.PROBE.kind, slot=0, share=1, retries=0, key=b"w" * 16, ifindex=1,
                      src_ip=0xC6120001, src_mac=b"\2" * 6, sport_base=61440, rate=1000.0, timeout_init_ms=100,
                      timeout_min_ms=100, timeout_max_ms=100, shard_size=2 * 4, hosts=HOSTS,
                      macs=(b"\3" * 6,) * len(HOSTS), ports=(22, 80, 443, 8080), gap_ms=GAP_MS, jitter_ms=20)


def test_every_shard_of_a_paced_plan_sends_at_once_each_host_at_its_gap() -> None:
    link, shared, plan = PairLink(), Shared(1), paced_plan()
    worker = Worker(shared, 0, GUARD, lambda: GUARD, link=link)
    worker._beat(clock.now())
    plans.write(shared.plans[0], plan)
    for shard in range(plan.shards):
        shared.jobs[0].push(JOB.pack(JOB_SHARD, 0, 0, 0, worker.generation, plan.gen, shard, 0))
    sends: dict[int, list[float]] = defaultdict(list)
    done: list[int] = []
    started = False
    deadline = time.monotonic() + 10
    while len(done) < plan.shards and time.monotonic() < deadline:
        worker.step(clock.now())
        if len(worker.shards.paced) == plan.shards:
            started = True
        for frame in link.sent():
            sends[int.from_bytes(dpkt.ethernet.Ethernet(frame).data.dst, "big")].append(time.monotonic())
        done += [r.shard for raw in shared.results[0].pop_many(64) if (r := Result.unpack(raw)).kind == R_DONE]
        time.sleep(0.002)
    assert started  # all three shards in hand and sending together
    assert sorted(done) == list(range(plan.shards))
    assert set(sends) == set(HOSTS) and all(len(t) == 4 for t in sends.values())
    firsts = sorted(times[0] for times in sends.values())
    assert firsts[-1] - firsts[0] < GAP_MS / 1000 + 0.02  # every shard's hosts began in the same gap
    for times in sends.values():  # read off the socket pair, so not to the microsecond
        assert min(b - a for a, b in zip(times, times[1:])) >= GAP_MS / 1000 - 0.005


def test_a_shard_re_issued_after_its_worker_died_keeps_each_hosts_gap() -> None:
    """The first worker sends a while and dies (is never stepped again); its successor, a new
    generation at the same index, is handed the same shards, as the control process re-issues
    them: no host's first probe from it comes within a gap of the dead one's last."""
    link, shared, plan = PairLink(), Shared(1), paced_plan()
    plans.write(shared.plans[0], plan)
    last: dict[int, float] = {}
    first: dict[int, float] = {}
    for life, seconds in enumerate((0.25, 0.2)):
        worker = Worker(shared, 0, GUARD, lambda: GUARD, link=link)
        worker.shards.clear()
        worker._beat(clock.now())
        for shard in range(plan.shards):
            shared.jobs[0].push(JOB.pack(JOB_SHARD, 0, 0, 0, worker.generation, plan.gen, shard, 0))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            worker.step(clock.now())
            for frame in link.sent():
                host = int.from_bytes(dpkt.ethernet.Ethernet(frame).data.dst, "big")
                if life == 0:
                    last[host] = time.monotonic()
                else:
                    first.setdefault(host, time.monotonic())
            time.sleep(0.001)
    assert set(last) == set(first) == set(HOSTS)
    for host in HOSTS:
        assert first[host] - last[host] >= GAP_MS / 1000 - 0.003  # read off the pair: not to the µs
