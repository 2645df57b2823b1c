"""Micro-benchmark of a worker's send path: Python microseconds per probe, per probe and in bulk.

    python bench/sends.py [--batches 8,16,32,64,128,256] [--repeat 300]
    python bench/sends.py --smoke      # seconds

No lab and no raw socket: the frames go through the real batching sender into a Unix datagram
socket pair, read back between batches outside the timing. One plan as a full-range scan's (32
hosts x 65535 ports, shards of 65536, tcp_syn) and one worker's Shards send batches of each size
from a shard's first pass two ways: one probe at a time (Shards._each: the permutation's
__call__, TcpSyn.frame and the sender's copy per probe, the path before the bulk one) and over
arrays (Shards._bulk: Permutation.many, TcpSyn.frames into the sender's rows); both end with the
one sendmmsg() of the batch. At the default rate a worker's turn sends 30-200 probes.

Prints per batch size the microseconds per probe of both paths and their ratio. Exit status 0.
"""

from __future__ import annotations

import argparse
import socket
import time
from unittest import mock

from netscand.engine import plan as plans
from netscand.engine import shards as shards_module
from netscand.engine.pacing import Pacer
from netscand.engine.probes import tcp_syn
from netscand.engine.probes.tcp_syn import TcpSyn
from netscand.engine.shards import PlanState, Shards
from netscand.engine.shm import Shared
from netscand.engine.sockets import Sender
from netscand.lab.harness import parse_bench_args

HOSTS = tuple(0xC612000A + i for i in range(32))
SMOKE = {"batches": "16,256", "repeat": 5}


def make_plan() -> plans.Plan:
    return plans.Plan(gen=5, kind=tcp_syn.PROBE.kind, slot=1, share=1, retries=1, key=b"k" * 16, ifindex=2,
                      src_ip=0xC6120001, src_mac=bytes.fromhex("020000000001"), sport_base=61440 + (1 << 10),
                      rate=100000.0, timeout_init_ms=1000, timeout_min_ms=100, timeout_max_ms=3000,
                      shard_size=1 << 16, hosts=HOSTS, macs=tuple(bytes([2, 0, 0, 0, 1, i]) for i in range(32)),
                      ports=tuple(range(1, 65536)))


def run(size: int, repeat: int) -> tuple[float, float]:
    """Microseconds per probe, per probe and in bulk, over `repeat` batches of `size` probes."""
    plan = make_plan()
    shared = Shared(1)
    plans.write(shared.plans[plan.slot], plan)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    theirs.setblocking(False)
    shards = Shards(shared, 0, lambda record: None, 0)
    state = PlanState(plan, Sender(ours))
    bulk = state.bulk
    assert bulk is not None, "the plan's batches are not built over arrays"
    shards.start(state, 0)
    run = shards.sending.popleft()
    ceiling = Pacer(1e9)

    def drain() -> int:
        n = 0
        while True:
            try:
                theirs.recv(2048)
            except BlockingIOError:
                return n
            n += 1

    def timed(path: tuple[TcpSyn, Sender] | None) -> float:
        """`repeat` batches from the shard's start (the path PlanState.bulk picks), in seconds."""
        state.bulk = path
        run.pos, total = 0, 0.0
        for _ in range(repeat):
            if run.pos + size > run.total:
                run.pos = 0
            state.pacer.tokens = ceiling.tokens = float(size)
            began = time.perf_counter()
            sent = shards._batch(run, size, 0.0, ceiling)
            total += time.perf_counter() - began
            assert sent == size and drain() == size, "a batch went short"
        return total

    with mock.patch.object(shards_module, "BULK_LEAST", 1):  # sizes below it too: to find the crossover
        timed(None), timed(bulk)  # warm-up: the probe builds its arrays, the sender grows
        per_probe, in_bulk = timed(None), timed(bulk)
    ours.close()
    theirs.close()
    return per_probe / repeat / size * 1e6, in_bulk / repeat / size * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="8,16,32,64,128,256", help="probes per batch, comma-separated")
    parser.add_argument("--repeat", type=int, default=300, help="batches sent per size and path")
    args = parse_bench_args(parser, SMOKE)
    print(f"{'probes/batch':>12} {'per probe us/probe':>19} {'bulk us/probe':>14} {'ratio':>6}")
    for size in (int(s) for s in args.batches.split(",")):
        if not 0 < size <= Sender.ROWS_MAX:
            parser.error(f"a batch is 1 to {Sender.ROWS_MAX} probes (what the socket pair holds unread)")
        one, bulk = run(size, args.repeat)
        print(f"{size:>12} {one:>19.2f} {bulk:>14.2f} {one / bulk:>5.1f}x")


if __name__ == "__main__":
    main()
