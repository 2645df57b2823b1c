"""ScanRun's planning over the real shared region, dispatcher and routing table, without root.

No packet is sent: there are no workers. The fake engine (fake_engine.py) plays their side of
the rings, and `Rst` below has chosen hosts answer, which is what lets a test walk a
127.0.0.0/8 scan group after group and weigh what the control process keeps.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path


from netscand.engine import plan as plans
from netscand.engine.probes import arp
from netscand.engine.shm import R_TALLY, pack_result
from netscand.netinfo import NetInfo
from netscand.scan.dispatch import Dispatcher
from netscand.scan.ports import top_ports
from netscand.scan.profiles import ScanRequest, resolve
from netscand.scan.runner import ScanRun
from netscand.scan.spec import ScanSpec
from netscand.scan.targets import parse_targets
from tests.scan.fake_engine import FakeEngine

RATE = 50_000.0  # the configured default (config.py): 7500 quick hosts per plan
MB = 1 << 20


class Rst:
    """The fake engine's answer (fake_engine.Answer): in each shard, every host that `answers`
    says RST on each of its probes, as any 127/8 address does, and nothing else does."""

    def __init__(self, answers: Callable[[int], bool]) -> None:
        self.answers = answers
        self.answering: dict[int, list[tuple[int, int]]] = {}  # plan generation -> (index, ip)

    def __call__(self, plan: plans.Plan, shard: int) -> Iterator[bytes]:
        start, end = plan.shard_range(shard)
        nh = len(plan.hosts)
        if plan.gen not in self.answering:
            self.answering[plan.gen] = [(i, ip) for i, ip in enumerate(plan.hosts) if self.answers(ip)]
        for index, ip in self.answering[plan.gen]:
            # Port-major layout: this host's probes are at index + k * nh.
            probes = len(range(index + -(-(start - index) // nh) * nh, end, nh))
            if probes:
                yield pack_result(R_TALLY, plan_gen=plan.gen, shard=shard, ip=ip, a=probes, b=0)


def quick(target: str) -> ScanSpec:
    spec = resolve(ScanRequest(target, "quick"), parse_targets(target), RATE, retries=3)
    assert spec.ports == top_ports(100)
    return spec


def every_thousandth(ip: int) -> bool:
    return ip % 1000 == 7


def test_a_slash_8_costs_what_answers_not_what_it_covers(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    # At a rate of its own, so its groups run one at a time and the walk can stop after one
    # (an adaptive scan's next group starts during the last one's tail: the test below).
    spec = dataclasses.replace(quick("127.0.0.0/8"), adaptive=False)
    per_plan = spec.hosts_per_plan(dispatcher.shared.workers)
    assert per_plan == 7500
    rst = Rst(every_thousandth)
    net = NetInfo()
    tracemalloc.start()
    try:
        run = ScanRun(spec, dispatcher, net)
        assert run.progress() == (0, 2**24 * 100)  # planned by arithmetic, nothing expanded
        groups = 40
        while run.groups < groups or run.running:
            run.step()
            if run.groups > groups:
                break
            engine.serve(rst)
            dispatcher.poll()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The old runner made a Host per address at admission: gigabytes for this target.
    assert peak < 50 * MB, f"planning and admission peaked at {peak / MB:.1f} MB"
    scanned = range(0x7F000000, 0x7F000000 + groups * per_plan)
    answered = [ip for ip in scanned if every_thousandth(ip)]
    assert sorted(run.result.hosts) == answered  # a Host only for what answered
    for h in run.result.hosts.values():
        assert (h.up, h.tcp.probed, h.tcp.closed_count, h.tcp.silent_count) == (True, 100, 100, 0)
    assert run.progress() == (groups * per_plan * 100, 2**24 * 100)
    assert not run.done


def first_group_tail(engine: FakeEngine, dispatcher: Dispatcher, run: ScanRun) -> bool:
    """Walk the first group's shards, a worker's share at a time, until each is handed out;
    then whether a second group started while it still runs."""
    run.step()
    first = run.running[0][0]
    while first.pending:
        engine.serve(Rst(every_thousandth))
        dispatcher.poll()
        run.step()
    assert not first.finished
    return run.groups > 1


def test_an_adaptive_scan_starts_its_next_group_during_the_last_ones_tail(
        engine: FakeEngine, dispatcher: Dispatcher) -> None:
    spec = quick("127.0.0.0/8")
    assert spec.adaptive
    run = ScanRun(spec, dispatcher, NetInfo())
    assert first_group_tail(engine, dispatcher, run)
    # Every shard handed out is not every shard done: the second group runs beside the first.
    assert len({work.group for _, work, _ in run.running}) == 2
    while run.groups < 4:
        engine.serve(Rst(every_thousandth))
        dispatcher.poll()
        run.step()
    hosts = spec.hosts_per_plan(dispatcher.shared.workers)
    done = [ip for ip in range(0x7F000000, 0x7F000000 + 2 * hosts) if every_thousandth(ip)]
    assert sorted(run.result.hosts)[: len(done)] == done  # nothing lost where groups met


def test_a_scan_at_its_own_rate_runs_one_group_at_a_time(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    run = ScanRun(dataclasses.replace(quick("127.0.0.0/8"), adaptive=False), dispatcher, NetInfo())
    assert not first_group_tail(engine, dispatcher, run)


def test_a_timed_out_plan_marks_only_hosts_that_answered(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    run = ScanRun(quick("127.0.0.0/24"), dispatcher, NetInfo())
    run.spec = dataclasses.replace(run.spec, host_timeout_s=0.05)
    run.step()
    while engine.serve(Rst(every_thousandth), finish=lambda plan: False):  # tallies only: shards never end
        dispatcher.poll()
    time.sleep(0.1)
    run.step()
    assert run.done
    answered = [ip for ip in range(0x7F000000, 0x7F000100) if every_thousandth(ip)]
    assert sorted(run.result.hosts) == answered
    assert all(h.timed_out for h in run.result.hosts.values())
    assert run.progress() == (256 * 100, 256 * 100)


def test_addresses_behind_one_route_are_planned_together(dispatcher: Dispatcher) -> None:
    # 200 scattered loopback addresses: one plan, not one plan per address.
    target = " ".join(f"127.{i}.0.{i}" for i in range(1, 201))
    run = ScanRun(quick(target), dispatcher, NetInfo())
    run.step()
    assert len(run.running) == 1
    assert run.running[0][0].plan.hosts == tuple(sorted(parse_targets(target).addresses()))
    assert not run.feeds and not run.queue


ON_LINK_PLAN = """
import json, tracemalloc
from netscand.engine import plan as plans
from netscand.engine.shm import Shared
from netscand.scan.dispatch import Dispatcher
from netscand.scan.profiles import ScanRequest, resolve
from netscand.scan.runner import ScanRun
from netscand.scan.targets import parse_targets
tracemalloc.start()
target = "198.18.1.0-198.19.255.255"  # on link, all but the scanner's own (loopback) block
spec = resolve(ScanRequest(target, "quick"), parse_targets(target), 50_000.0, 3)
run = ScanRun(spec, Dispatcher(Shared(workers=2)))
run.step()
print(json.dumps({"peak": tracemalloc.get_traced_memory()[1], "capacity": plans.Plan.capacity(1),
                  "kinds": [sub.plan.kind for sub, _, _ in run.running],
                  "hosts": [len(sub.plan.hosts) for sub, _, _ in run.running],
                  "left": [feed.targets.count - feed.position for feed in run.feeds],
                  "planned": run.planned, "found": len(run.result.hosts)}))
"""


def test_an_on_link_sweep_is_cut_into_plans_as_they_run(netns: str) -> None:
    # 198.18.0.0/15 on link through a veth pair whose both ends stay in a namespace of its own,
    # so nothing could leave it; and no worker runs, so no frame is even written.
    for args in (["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                 ["addr", "add", "198.18.0.1/15", "dev", "v0"], ["link", "set", "v0", "up"],
                 ["link", "set", "v1", "up"]):
        subprocess.run(["ip", "-n", netns, *args], check=True)
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", ON_LINK_PLAN],
                         check=True, capture_output=True, text=True, cwd=Path(__file__).parents[2]).stdout
    seen = json.loads(out)
    # ARP first, one plan's worth of the addresses; the rest still ranges in the feed. Its
    # next plan waits for it: a group that feeds the planner never runs beside another.
    assert seen["kinds"] == [arp.PROBE.kind]
    assert seen["hosts"] == [seen["capacity"]]
    assert seen["left"] == [2**17 - 256 - seen["capacity"]]
    assert seen["planned"] == 2**17 - 256
    assert seen["found"] == 0
    assert seen["peak"] < 50 * MB
