"""The policy where the privilege is: PlanGuard on its own, then a real Worker refusing a real
ScanRun's plan through a real Dispatcher, in one process over a real shared region (the worker
is driven by hand, so nothing is sent: a refused plan never gets a socket)."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netscand.engine import plan as plans
from netscand.engine.guard import PlanGuard, route_gateways
from netscand.engine.probes import arp, tcp_syn
from netscand.engine.ranges import of_cidrs
from netscand.engine.shm import (
    R_REFUSED,
    REFUSE_PLAN,
    REFUSE_RATE,
    REFUSE_TARGET,
    Result,
    Shared,
)
from netscand.engine.worker import Worker
from netscand.scan.dispatch import Dispatcher
from netscand.scan.runner import ScanRun
from netscand.scan.spec import ScanSpec
from netscand.scan.targets import parse_targets

LAB = "198.18.0.0/15"


@dataclass
class Policy:
    allowed_targets: list[str]
    excluded_targets: list[str] = field(default_factory=list)
    max_rate: float = 1000.0


def ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def plan_for(*hosts: str, rate: float = 100.0, kind: int = tcp_syn.PROBE.kind, slot: int = 0) -> plans.Plan:
    addrs = tuple(ip(h) for h in hosts)
    return plans.Plan(gen=5, kind=kind, slot=slot, share=1, retries=0, key=b"k" * 16, ifindex=1,
                      src_ip=ip("198.18.0.2"), src_mac=b"\2" * 6, sport_base=61440, rate=rate,
                      timeout_init_ms=100, timeout_min_ms=100, timeout_max_ms=100, shard_size=1024,
                      hosts=addrs, macs=(b"\0" * 6,) * len(addrs), ports=(80,))


# -- PlanGuard ---------------------------------------------------------------------------------
def test_merge_sorts_and_joins_touching_blocks() -> None:
    assert of_cidrs(["10.0.1.0/24", "10.0.0.0/24", "10.0.0.128/25", "192.168.0.0/16"]) == (
        (ip("10.0.0.0"), ip("10.0.1.255")), (ip("192.168.0.0"), ip("192.168.255.255")))


def test_hosts_must_be_allowed_and_not_excluded() -> None:
    guard = PlanGuard.of(Policy([LAB, "127.0.0.0/8"], ["198.18.0.99/32"]))
    assert guard.refusal(plan_for("198.18.0.10", "198.19.255.255", "127.0.0.1")) == 0
    assert guard.refusal(plan_for("198.18.0.10", "198.20.0.1")) == REFUSE_TARGET
    assert guard.refusal(plan_for("198.18.0.98", "198.18.0.99", "198.18.0.100")) == REFUSE_TARGET
    assert guard.refusal(plan_for("8.8.8.8")) == REFUSE_TARGET
    assert PlanGuard.of(Policy([])).refusal(plan_for("198.18.0.10")) == REFUSE_TARGET


def test_rate_above_max_or_not_a_rate_is_refused() -> None:
    guard = PlanGuard.of(Policy([LAB], max_rate=500.0))
    assert guard.refusal(plan_for("198.18.0.10", rate=500.0)) == 0
    for rate in (500.5, 0.0, -1.0, math.nan, math.inf):
        assert guard.refusal(plan_for("198.18.0.10", rate=rate)) == REFUSE_RATE, rate


def test_an_arp_plan_may_resolve_a_gateway_outside_the_policy() -> None:
    """Reaching an allowed routed target may need the gateway's MAC; ARP never leaves the segment."""
    guard = PlanGuard.of(Policy(["10.5.0.0/24"]))
    resolve = plan_for("10.5.0.7", "192.168.1.1", kind=arp.PROBE.kind)
    assert guard.refusal(resolve) == REFUSE_TARGET
    assert guard.refusal(resolve, frozenset({ip("192.168.1.1")})) == 0
    assert guard.refusal(resolve, frozenset({ip("192.168.1.2")})) == REFUSE_TARGET
    # The guard's own rule, whatever its caller passes: gateways are let through for ARP alone.
    assert guard.refusal(plan_for("10.5.0.7", "192.168.1.1"), frozenset({ip("192.168.1.1")})) == REFUSE_TARGET


def test_only_a_probe_that_resolves_neighbours_has_gateways_let_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker lets the routing table's gateways through for ARP alone: a SYN to a gateway
    outside the policy would be a probe of it."""
    monkeypatch.setattr("netscand.engine.intake.route_gateways", lambda: frozenset({ip("192.168.1.1")}))
    guard = PlanGuard.of(Policy(["10.5.0.0/24"]))
    worker = Worker(Shared(1), 0, guard, lambda: guard)
    assert worker.intake._refusal(plan_for("10.5.0.7", "192.168.1.1", kind=arp.PROBE.kind)) == 0
    assert worker.intake._refusal(plan_for("10.5.0.7", "192.168.1.1")) == REFUSE_TARGET


blocks = st.builds(lambda a, p: f"10.0.0.{a}/{p}", st.integers(0, 255), st.integers(24, 32))


@settings(max_examples=300, deadline=None)
@given(st.lists(blocks, max_size=5), st.lists(blocks, max_size=5),
       st.lists(st.integers(0, 255), min_size=1, max_size=20))
def test_permits_agrees_with_a_host_by_host_reading(allowed: list[str], excluded: list[str],
                                                   last_octets: list[int]) -> None:
    guard = PlanGuard.of(Policy(allowed, excluded))
    nets = [[ipaddress.IPv4Network(b, strict=False) for b in blocks] for blocks in (allowed, excluded)]
    hosts = [ipaddress.IPv4Address(f"10.0.0.{o}") for o in last_octets]
    expected = all(any(h in n for n in nets[0]) and not any(h in n for n in nets[1]) for h in hosts)
    assert guard.permits([int(h) for h in hosts]) == expected


def test_route_gateways_reads_the_main_table(tmp_path: Path) -> None:
    routes = tmp_path / "route"
    routes.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"   # default via 192.168.0.1
        "eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"   # on-link, no gateway
        "garbage line\n")
    assert route_gateways(routes) == frozenset({ip("192.168.0.1")})
    assert route_gateways(tmp_path / "missing") == frozenset()
    assert isinstance(route_gateways(), frozenset)  # this namespace's own table parses


# -- a real worker, a real dispatcher, a real scan run ----------------------------------------
class Engine:
    """One worker and the control side over one shared region, the worker stepped by hand."""

    def __init__(self, guard: PlanGuard, reloaded: PlanGuard | None = None) -> None:
        self.shared = Shared(1)
        self.reloads = 0

        def reload() -> PlanGuard:
            self.reloads += 1
            return reloaded or guard

        self.worker = Worker(self.shared, 0, guard, reload)
        self.worker._beat(time.monotonic())  # its generation, before the dispatcher reads it
        self.dispatcher = Dispatcher(self.shared)

    def results(self) -> list[Result]:
        return [Result.unpack(r) for r in self.shared.results[0].pop_many(100)]


def loopback_scan(engine: Engine, rate: float = 100.0) -> ScanRun:
    """A scan of a loopback address: routed by this namespace's table, never sent (refused)."""
    spec = ScanSpec(targets=parse_targets("127.0.0.5"), ports=(80,), rate=rate, retries=0)
    run = ScanRun(spec, engine.dispatcher)
    run.step()
    assert not run.done
    return run


def test_a_worker_refuses_a_target_outside_the_policy_and_the_scan_fails_with_the_reason() -> None:
    engine = Engine(PlanGuard.of(Policy([LAB])))
    run = loopback_scan(engine)
    engine.worker.intake.refresh()
    assert engine.reloads == 1  # the policy was read again before refusing
    assert not engine.worker.plans and not engine.worker.rx  # no socket for a refused plan
    engine.dispatcher.poll()
    assert run.done
    assert run.failure == "the engine refused the plan: target outside the policy"
    assert engine.dispatcher.free_slot == 0  # the plan is retired, its slot free
    engine.worker.intake.refresh()
    assert engine.results() == []  # refused once per plan, not once per look


def test_a_worker_refuses_a_rate_above_the_policy() -> None:
    engine = Engine(PlanGuard.of(Policy(["127.0.0.0/8"], max_rate=50.0)))
    run = loopback_scan(engine, rate=100.0)
    engine.worker.intake.refresh()
    engine.dispatcher.poll()
    assert run.done and run.failure == "the engine refused the plan: rate above policy.max_rate"


def test_a_policy_widened_since_the_workers_started_is_read_before_refusing() -> None:
    wide = PlanGuard.of(Policy(["127.0.0.0/8", LAB], max_rate=4000.0))
    engine = Engine(PlanGuard.of(Policy([LAB])), reloaded=wide)
    plan = plan_for("127.0.0.5")
    assert engine.worker.intake._refusal(plan) == 0
    assert engine.worker.intake.guard is wide and engine.reloads == 1
    assert engine.worker.intake.ceiling == 4000.0  # one worker: the whole ceiling is its own


def test_a_policy_narrowed_by_a_reload_is_enforced_once_the_worker_hears_of_it() -> None:
    narrow = PlanGuard.of(Policy([LAB]))
    engine = Engine(PlanGuard.of(Policy(["127.0.0.0/8", LAB])), reloaded=narrow)
    previous = signal.signal(signal.SIGHUP, engine.worker._on_hup)  # as Worker.run installs it
    try:
        os.kill(os.getpid(), signal.SIGHUP)  # what the supervisor passes on at a reload
    finally:
        signal.signal(signal.SIGHUP, previous)
    run = loopback_scan(engine)
    engine.worker.intake.refresh()
    assert engine.worker.intake.guard is narrow and engine.reloads == 2  # at the hangup, and before refusing
    engine.dispatcher.poll()
    assert run.failure == "the engine refused the plan: target outside the policy"


def test_a_worker_reads_the_policy_as_it_starts_and_is_ready_before_it_reads_a_plan() -> None:
    narrow = PlanGuard.of(Policy([LAB]))
    engine = Engine(PlanGuard.of(Policy(["127.0.0.0/8", LAB])), reloaded=narrow)
    engine.worker.stopping = True  # run() boots, then leaves its loop at once
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        engine.worker.run()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert engine.worker.intake.guard is narrow and engine.reloads == 1
    assert engine.shared.worker_ready(0) == os.getpid()


def test_a_malformed_plan_slot_is_refused_not_fatal() -> None:
    engine = Engine(PlanGuard.of(Policy([LAB])))
    plans.write(engine.shared.plans[2], dataclasses.replace(plan_for("198.18.0.10", slot=2), kind=99))
    assert engine.worker.intake.plan(2) is None
    (r,) = engine.results()
    assert (r.kind, r.plan_gen, r.a) == (R_REFUSED, 5, REFUSE_PLAN)


def test_each_worker_paces_at_most_its_share_of_max_rate() -> None:
    shared = Shared(4)
    guard = PlanGuard.of(Policy([LAB], max_rate=1000.0))
    worker = Worker(shared, 2, guard, lambda: guard)
    assert worker.intake.ceiling == 250.0
