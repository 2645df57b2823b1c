"""A paced scan's plans (stealth; custom with host_gap_ms) over the fake engine and routing table
of test_runner_unit: its TCP ports probed by the kernel-shaped SYN, its UDP ports after them (not
beside), each plan carrying the spec's pacing with its budget in probes, shards of whole
hosts that all send at once, no wall-time cut, and progress and ETA from its paced duration."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from netscand.engine import plan as plans
from netscand.engine.probes import PROBES
from netscand.engine.shm import PLAN_BYTES, PLAN_SHARDS, SHARD_MAX
from netscand.scan.dispatch import Dispatcher
from netscand.scan.live import Running
from netscand.scan.profiles import PACED_SILENT_PORTS
from netscand.scan.runner import ScanRun
from netscand.scan.spec import Pacing
from netscand.scan.work import SPORT_BASE, paced_shard
from netscand.store.clock import parse
from tests.scan.fake_engine import FakeEngine
from tests.scan.test_runner_unit import (
    PORTS,
    Device,
    FakeNet,
    Network,
    drive,
    hosts,
    kinds,
    mac,
    spec,
)

PACING = Pacing(3500, 1000, 32768, 60999)
UDP = (53, 161)


def test_a_paced_scan_sends_its_tcp_ports_by_the_kernel_shaped_syn_then_its_udp_ports(
        engine: FakeEngine, dispatcher: Dispatcher) -> None:
    network = Network({"198.18.0.5": Device(mac(5), {22}), "198.18.0.9": Device(mac(9))})
    run = ScanRun(spec("198.18.0.0/28", pacing=PACING, udp_ports=UDP, host_timeout_s=300.0), dispatcher, FakeNet())
    arp, syn, udp = drive(run, dispatcher, engine, network)
    assert kinds([arp, syn, udp]) == ["arp", "tcp_syn_kernel", "udp"]
    assert not arp.paced and arp.gap_ms == arp.silent_probes == arp.sport_lo == 0  # ARP is never paced
    for plan in (syn, udp):
        # Fewer ports than PACED_SILENT_PORTS: a host is given up only when it answered none.
        assert (plan.gap_ms, plan.jitter_ms, plan.silent_probes) == (3500, 1000, len(plan.ports))
        assert (plan.sport_lo, plan.sport_hi) == (32768, 60999) and plan.sport_hi < SPORT_BASE
        assert plan.shard_size % len(plan.ports) == 0  # whole hosts: one worker owns each host's gap
        assert hosts(plan) == ["198.18.0.5", "198.18.0.9"]
    # One after the other, each its own group, so a host never has a TCP and a UDP probe in flight.
    assert run.groups == 3
    assert run.result.open_ports == 1  # what the kernel-shaped SYN found is the scan's


def test_a_paced_plans_header_is_one_the_engine_reads_back(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    run = ScanRun(spec("127.0.0.1-127.0.0.40", pacing=PACING, discovery=None, ports=tuple(range(1, 1001)),
                       host_timeout_s=300.0), dispatcher, FakeNet())
    run.step()
    [sub] = [s for s in dispatcher.slots if s]
    buf = memoryview(bytearray(PLAN_BYTES))
    plans.write(buf, sub.plan)
    assert plans.read(buf, sub.plan.slot, PROBES) == sub.plan
    assert PROBES[sub.plan.kind].name == "tcp_syn_kernel" and sub.plan.paced
    assert sub.plan.silent_probes == PACED_SILENT_PORTS  # of 1000 ports: a silent host's first 100


def test_the_udp_work_of_a_paced_scan_waits_for_its_tcp_work(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    run = ScanRun(spec("198.19.1.0/30", pacing=PACING, udp_ports=UDP, discovery=None), dispatcher, FakeNet())
    run.step()
    assert [PROBES[s.plan.kind].name for s, _, _ in run.running] == ["tcp_syn_kernel"]
    engine.serve(Network({}).answer)
    dispatcher.poll()
    run.step()
    assert [PROBES[s.plan.kind].name for s, _, _ in run.running] == ["udp"]
    unpaced = ScanRun(spec("198.19.1.0/30", udp_ports=UDP, discovery=None), dispatcher, FakeNet())
    unpaced.step()  # side by side, as ever
    assert {PROBES[s.plan.kind].name for s, _, _ in unpaced.running} == {"tcp_syn", "udp"}


def test_a_paced_plan_is_not_cut_by_the_wall_clock(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    """Its budget is in probes, in the engine: a host that answers is probed to its last port."""
    run = ScanRun(spec("198.19.1.0/30", pacing=PACING, discovery=None, host_timeout_s=0.01), dispatcher, FakeNet())
    run.step()
    engine.serve(Network({"198.19.1.2": Device(mac(2), {22})}).answer, finish=lambda plan: False)
    dispatcher.poll()
    time.sleep(0.05)
    run.step()
    assert len(run.running) == 1 and not run.done
    assert not any(h.timed_out for h in run.result.hosts.values())
    assert run.running[0][0].plan.silent_probes == len(PORTS)


def test_progress_follows_the_paced_duration(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    """A paced plan's shards all end at its end: its progress is its time over its duration
    (ports x mean gap), not its finished shards."""
    pacing = Pacing(100, 0, 32768, 60999)  # 2 ports x 0.1 s: a 0.2 s plan
    run = ScanRun(spec("198.19.1.0/30", pacing=pacing, discovery=None), dispatcher, FakeNet())
    run.step()
    left = run.remaining_s()
    assert left is not None and 0.15 < left <= 0.2
    time.sleep(0.1)
    done, planned = run.progress()
    assert planned == 8 and 3 <= done <= 5  # about half of its time
    time.sleep(0.15)
    assert run.progress() == (8, 8) and run.remaining_s() == 0  # its time is up: the engine ends it


def test_the_eta_of_a_paced_scan_is_its_paced_time_left(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    run = ScanRun(spec("198.19.1.0/30", pacing=PACING, discovery=None), dispatcher, FakeNet())
    running = Running("s", run)
    run.step()
    eta = parse(running.progress()["estimated_completion"])
    expected = len(PORTS) * PACING.mean_gap_s  # 8 s
    assert abs((eta - datetime.now(UTC)).total_seconds() - expected) <= 1  # the store keeps whole seconds


def _left_after(run: ScanRun, elapsed: float) -> float | None:
    """The scan's time left were its running plan started `elapsed` seconds ago."""
    sub, work, _ = run.running[0]
    run.running[0] = (sub, work, time.monotonic() - elapsed)
    return run.remaining_s()


def test_a_paced_tcp_plan_running_past_its_first_round_is_told_its_retry_round(dispatcher: Dispatcher) -> None:
    """Hosts that left ports unanswered go round again, paced like the first: once the first
    round is over and the plan still runs, its time left is a round more per retry (the bound),
    not nothing."""
    pacing = Pacing(1000, 0, 32768, 60999)  # 2 ports x 1 s: a 2 s round
    run = ScanRun(spec("198.19.1.0/30", pacing=pacing, discovery=None, timeout_ms=100, retries=1),
                  dispatcher, FakeNet())
    run.step()
    round_s = 2 + 1 + 0.1  # its paced duration, a gap (no jitter) and the reply timeout
    assert _left_after(run, 1.5) == pytest.approx(0.5, abs=0.01)
    assert _left_after(run, 2.5) == 0  # its last probes' replies are awaited
    assert _left_after(run, 3.5) == pytest.approx(2 * round_s - 3.5, abs=0.01)
    assert _left_after(run, 2 * round_s + 0.1) == 0
    eta = parse(_running_at(run, 3.5).progress()["estimated_completion"])
    assert 1.5 < (eta - datetime.now(UTC)).total_seconds() <= 2.7  # the store keeps whole seconds


def _running_at(run: ScanRun, elapsed: float) -> Running:
    _left_after(run, elapsed)
    return Running("s", run)


def test_a_paced_udp_plan_past_its_duration_is_not_told_another_round(engine: FakeEngine,
                                                                      dispatcher: Dispatcher) -> None:
    """A UDP port's retries are in its paced duration already (nearly all stay silent)."""
    pacing = Pacing(100, 0, 32768, 60999)
    run = ScanRun(spec("198.19.1.0/30", pacing=pacing, udp_ports=UDP, discovery=None, timeout_ms=100, retries=1),
                  dispatcher, FakeNet())
    run.step()
    engine.serve(Network({}).answer)  # the TCP plan ends; the UDP one starts
    dispatcher.poll()
    run.step()
    assert [PROBES[s.plan.kind].name for s, _, _ in run.running] == ["udp"]
    duration = len(UDP) * 2 * pacing.mean_gap_s  # each port sent 1 + retries times
    assert _left_after(run, duration + 0.5) == 0


def test_an_unpaced_scan_has_no_paced_eta(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    run = ScanRun(spec("198.19.1.0/30", discovery=None), dispatcher, FakeNet())
    run.step()
    assert run.remaining_s() is None


def test_groups_still_to_cut_add_their_paced_duration(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    run = ScanRun(spec("198.19.1.0/28", pacing=PACING, discovery=None, max_hosts=4), dispatcher, FakeNet())
    run.step()  # one group of 4 hosts runs, 3 more wait in the feed
    left = run.remaining_s()
    assert left is not None and abs(left - 4 * len(PORTS) * PACING.mean_gap_s) < 0.1


@pytest.mark.parametrize(("nhosts", "nports", "workers", "shards"), [
    (400, 1000, 4, 8),  # 50 hosts a shard, two per worker
    (100, 1000, 4, 4),  # one per worker
    (1, 1000, 4, 1),
    (10, 1000, 4, 4),  # 3, 3, 3, 1
    (130, 1000, 1, 2),  # 65 hosts a shard: SHARD_MAX's most
    (8, 65535, 4, 8),  # one host a shard
])
def test_a_paced_shard_is_whole_hosts_spread_over_the_workers(nhosts: int, nports: int, workers: int,
                                                              shards: int) -> None:
    size = paced_shard(nhosts, nports, workers)
    assert size % nports == 0 and size <= SHARD_MAX
    assert -(-nhosts * nports // size) == shards <= workers * PLAN_SHARDS


def test_paced_groups_behind_other_routes_start_together_within_the_rate(
        engine: FakeEngine, dispatcher: Dispatcher) -> None:
    # Loopback and a routed range are two feeds: a paced group of one need not wait out the
    # other's hours, as long as the hosts in flight stay within what the rate keeps at their gap.
    both = spec("127.0.0.1-127.0.0.2,198.19.1.0/30", pacing=PACING, discovery=None)
    run = ScanRun(both, dispatcher, FakeNet())
    run.step()
    assert sorted(hosts(s.plan) for s, _, _ in run.running) == [
        ["127.0.0.1", "127.0.0.2"], ["198.19.1.0", "198.19.1.1", "198.19.1.2", "198.19.1.3"]]
    # Five hosts a second at a 4 s mean gap keep 20 at their pace: no room for a second group of 20.
    crowded = ScanRun(spec("127.0.0.1-127.0.0.20,198.19.1.0/30", pacing=PACING, discovery=None, rate=5.0),
                      dispatcher, FakeNet())
    crowded.step()
    assert [len(s.plan.hosts) for s, _, _ in crowded.running] == [20]


def test_the_arp_of_on_link_hosts_does_not_wait_for_a_routed_paced_scan(
        engine: FakeEngine, dispatcher: Dispatcher) -> None:
    # The routed range's paced scan starts first (its gateway is known); the on-link host's ARP
    # and then its paced scan start beside it instead of waiting out its hours.
    network = Network({"198.18.0.5": Device(mac(5), {22}), "198.19.1.1": Device(mac(254), {80})})
    run = ScanRun(spec("198.18.0.5,198.19.1.0/30", pacing=PACING, discovery=None), dispatcher, FakeNet())
    run.step()
    assert sorted(PROBES[s.plan.kind].name for s, _, _ in run.running) == ["arp", "tcp_syn_kernel"]
    engine.serve(network.answer, finish=lambda plan: not plan.paced)  # ARP ends, the paced scan goes on
    dispatcher.poll()
    run.step()
    assert sorted(hosts(s.plan) for s, _, _ in run.running) == [
        ["198.18.0.5"], ["198.19.1.0", "198.19.1.1", "198.19.1.2", "198.19.1.3"]]
