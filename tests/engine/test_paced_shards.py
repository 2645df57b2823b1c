"""A worker's paced shards under a tight rate ceiling: every shard gets its turn, not only the
first ones (real Shards and transmitter over a socket pair, tests/engine/links.py)."""

from __future__ import annotations

import time
from collections import Counter

import dpkt

from netscand.engine import clock
from netscand.engine import plan as plans
from netscand.engine.pacing import Pacer
from netscand.engine.probes import tcp_syn
from netscand.engine.shards import PlanState, Shards
from netscand.engine.shm import Shared
from tests.engine.links import PairLink

HOSTS = tuple(0xC6120010 + i for i in range(8))


def test_a_tight_ceiling_is_shared_by_every_paced_shard_in_turn() -> None:
    # Each shard's two hosts want a probe every 20 ms (100/s), the ceiling lets out 60/s in all.
    plan = plans.Plan(gen=5, kind=tcp_syn.PROBE.kind, slot=0, share=1, retries=0, key=b"r" * 16, ifindex=1,
                      src_ip=0xC6120001, src_mac=b"\2" * 6, sport_base=61440, rate=10_000.0, timeout_init_ms=100,
                      timeout_min_ms=100, timeout_max_ms=100, shard_size=2 * 200, hosts=HOSTS,
                      macs=(b"\3" * 6,) * len(HOSTS), ports=tuple(range(1, 201)), gap_ms=20)
    link, shared = PairLink(), Shared(1)
    plans.write(shared.plans[0], plan)
    shards = Shards(shared, 0, lambda record: None, 0)
    state = PlanState(plan, link.transmitter(1, False))
    for shard in range(plan.shards):
        shards.start(state, shard)
    ceiling = Pacer(60.0)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        time.sleep(min(shards.send(clock.now(), ceiling), 0.005))
    per_shard = Counter(HOSTS.index(int.from_bytes(dpkt.ethernet.Ethernet(f).data.dst, "big")) // 2
                        for f in link.sent())
    total = sum(per_shard.values())
    assert 60 < total < 110  # the ceiling held: 60/s for 1.5 s, and its first token
    assert all(per_shard[s] >= total / 4 / 2 for s in range(4)), per_shard  # each near its quarter
