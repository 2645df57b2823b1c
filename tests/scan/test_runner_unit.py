"""ScanRun over a fake engine (fake_engine.py) and a fake routing table: how targets are routed
(ARP on-link, ping sweep behind a gateway, a gateway resolved first, loopback, no route), what
each plan carries, progress, the per-host budget and failures, with no root and no lab. Nothing
is sent: the test answers each plan's shards as the hosts of a small scripted network would."""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


from netscand.engine import plan as plans
from netscand.engine.probes import PROBES
from netscand.engine.shm import R_HOST, R_PORT, R_REFUSED, R_TALLY, REFUSE_TARGET, S_OPEN, pack_result
from netscand.netinfo import NetInfo, NoRoute, Route
from netscand.scan.dispatch import Dispatcher
from netscand.scan.runner import ScanRun
from netscand.scan.spec import Discovery, ScanSpec
from netscand.scan.targets import parse_targets
from netscand.scan.work import ZERO_MAC
from tests.scan.fake_engine import FakeEngine

RATE = 3000.0
PORTS = (22, 80)


def ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def mac(n: int) -> bytes:
    return bytes((2, 0, 0, 0, 0, n))


LAN_GW, WAN_GW = ip("198.18.0.254"), ip("198.18.1.254")
LAN = Route(2, "lan0", ip("198.18.0.1"), mac(1), None, False)  # 198.18.0.0/24, on-link
WAN = Route(3, "wan0", ip("198.18.1.1"), mac(2), None, False)  # 198.18.1.0/24, on-link
VIA_LAN = dataclasses.replace(LAN, gateway=LAN_GW)  # 198.19.1.0/24: the gateway is a known neighbour
VIA_WAN = dataclasses.replace(WAN, gateway=WAN_GW)  # 198.19.2.0/24: the gateway must be resolved
LOOPBACK = Route(1, "lo", ip("127.0.0.1"), ZERO_MAC, None, True)


class FakeNet(NetInfo):
    """A routing table of inclusive address ranges; anything else has no route."""

    def __init__(self) -> None:
        self.neighbours: dict[int | None, bytes] = {LAN_GW: mac(254)}
        self.table = sorted([(ip("127.0.0.0"), ip("127.255.255.255"), LOOPBACK),
                             (ip("198.18.0.0"), ip("198.18.0.255"), LAN), (ip("198.18.1.0"), ip("198.18.1.255"), WAN),
                             (ip("198.19.1.0"), ip("198.19.1.255"), VIA_LAN),
                             (ip("198.19.2.0"), ip("198.19.2.255"), VIA_WAN)], key=lambda e: e[0])

    def route_ranges(self, ranges: tuple[tuple[int, int], ...]) -> list[tuple[int, int, Route]]:
        pieces = []
        for start, end in ranges:
            for lo, hi, route in self.table:
                if lo <= end and start <= hi:
                    pieces.append((max(lo, start), min(hi, end), route))
            if sum(b - a + 1 for a, b, _ in pieces if start <= a <= end) != end - start + 1:
                raise NoRoute(f"no route to part of {ipaddress.IPv4Address(start)}-{ipaddress.IPv4Address(end)}")
        return pieces


@dataclass
class Device:
    mac: bytes
    open: set[int] = field(default_factory=set)
    pings: bool = True  # answers ICMP echo and TCP ACK


class Network:
    """The fake engine's answers: what each host would reply to each plan's probes."""

    def __init__(self, devices: dict[str, Device]) -> None:
        self.devices = {ip(a): d for a, d in devices.items()}
        self.plans: dict[int, plans.Plan] = {}  # every plan answered, by generation

    def answer(self, plan: plans.Plan, shard: int) -> Iterable[bytes]:
        self.plans[plan.gen] = plan
        kind = PROBES[plan.kind].name
        start, end = plan.shard_range(shard)
        probed: dict[int, list[int]] = {}  # host -> its ports in this shard (in the plan's layout)
        for i in range(start, end):
            host, port = plan.pair(i)
            probed.setdefault(plan.hosts[host], []).append(plan.ports[port])
        for host, ports in probed.items():
            device = self.devices.get(host)
            if device is not None:
                yield from self._replies(kind, plan, shard, host, ports, device)

    @staticmethod
    def _replies(kind: str, plan: plans.Plan, shard: int, host: int, ports: list[int],
                 device: Device) -> Iterator[bytes]:
        if kind == "arp":
            yield pack_result(R_HOST, plan_gen=plan.gen, ip=host, mac=device.mac)
        elif kind in ("icmp_echo", "tcp_ack") and device.pings:
            yield pack_result(R_HOST, plan_gen=plan.gen, ip=host, mac=ZERO_MAC)
        elif kind in ("tcp_syn", "tcp_syn_kernel"):
            for port in set(ports) & device.open:
                yield pack_result(R_PORT, state=S_OPEN, plan_gen=plan.gen, ip=host, port=port, ttl=64)
            if closed := len(set(ports) - device.open):
                yield pack_result(R_TALLY, plan_gen=plan.gen, shard=shard, ip=host, a=closed)


def spec(target: str, **fields: Any) -> ScanSpec:
    return dataclasses.replace(ScanSpec(parse_targets(target), PORTS, RATE, retries=1), **fields)


def drive(run: ScanRun, dispatcher: Dispatcher, engine: FakeEngine, network: Network) -> list[plans.Plan]:
    """Step the scan to its end, the fake engine answering every shard; its plans in order."""
    for _ in range(100):
        run.step()
        if run.done:
            return [network.plans[gen] for gen in sorted(network.plans)]
        engine.serve(network.answer)
        dispatcher.poll()
    raise AssertionError("the scan did not end")


def kinds(plan_list: list[plans.Plan]) -> list[str]:
    return [PROBES[p.kind].name for p in plan_list]


def hosts(plan: plans.Plan) -> list[str]:
    return [str(ipaddress.IPv4Address(h)) for h in plan.hosts]


def test_on_link_hosts_are_found_by_arp_then_port_scanned_at_their_own_macs(
        engine: FakeEngine, dispatcher: Dispatcher) -> None:
    network = Network({"198.18.0.5": Device(mac(5), {22}), "198.18.0.9": Device(mac(9))})
    run = ScanRun(spec("198.18.0.0/28"), dispatcher, FakeNet())
    arp, syn = drive(run, dispatcher, engine, network)
    assert kinds([arp, syn]) == ["arp", "tcp_syn"]  # no ping sweep on-link: ARP finds every host
    assert len(arp.hosts) == 16 and arp.ports == (0,) and set(arp.macs) == {ZERO_MAC}
    fixed = PROBES[arp.kind]  # ARP's own retries and timeout, whatever the scan's
    assert (arp.retries, arp.timeout_min_ms, arp.timeout_max_ms) == (fixed.retries, fixed.timeout_ms, fixed.timeout_ms)
    assert (arp.ifindex, arp.src_ip, arp.src_mac) == (LAN.ifindex, LAN.src_ip, LAN.src_mac)
    assert hosts(syn) == ["198.18.0.5", "198.18.0.9"] and syn.macs == (mac(5), mac(9)) and syn.ports == PORTS
    assert syn.rate == RATE and syn.retries == 1 and not syn.flags & plans.FLAG_LOOPBACK
    found = run.result.hosts
    assert sorted(found) == [ip("198.18.0.5"), ip("198.18.0.9")]
    assert found[ip("198.18.0.5")].tcp.open_count == 1 and found[ip("198.18.0.9")].tcp.closed_count == 2
    assert run.errors == [] and run.failure is None
    assert run.progress() == (16 + 2 * len(PORTS),) * 2


def test_routed_targets_are_pinged_together_then_port_scanned_through_the_gateway(
        engine: FakeEngine, dispatcher: Dispatcher) -> None:
    network = Network({"198.19.1.3": Device(mac(3), {443, 22}), "198.19.1.7": Device(mac(7), pings=False)})
    run = ScanRun(spec("198.19.1.0/28"), dispatcher, FakeNet())
    sweep = drive(run, dispatcher, engine, network)
    assert kinds(sweep) == ["icmp_echo", "tcp_syn", "tcp_ack", "tcp_syn"]
    pings, scan = sweep[:3], sweep[3]
    assert [p.ports for p in pings] == [(0,), (443,), (80,)]  # nmap's -PE -PS443 -PA80
    assert all(p.rate == RATE / 3 and set(p.macs) == {mac(254)} and len(p.hosts) == 16 for p in pings)
    # .7 answers no ping but its SYN to 443 (closed) still shows it up; .3 answers everything.
    assert hosts(scan) == ["198.19.1.3", "198.19.1.7"] and set(scan.macs) == {mac(254)}
    h3 = run.result.hosts[ip("198.19.1.3")]
    assert [p for p in h3.tcp.open] == [22]  # 443 answered a ping, not the port scan: not a result


def test_a_gateway_missing_from_the_neighbour_table_is_resolved_first_and_is_no_finding(
        engine: FakeEngine, dispatcher: Dispatcher) -> None:
    network = Network({"198.18.1.254": Device(mac(200)), "198.19.2.4": Device(mac(4), {80})})
    run = ScanRun(spec("198.19.2.0/29"), dispatcher, FakeNet())
    sweep = drive(run, dispatcher, engine, network)
    assert kinds(sweep) == ["arp", "icmp_echo", "tcp_syn", "tcp_ack", "tcp_syn"]
    assert hosts(sweep[0]) == ["198.18.1.254"] and sweep[0].ifindex == WAN.ifindex
    assert all(set(p.macs) == {mac(200)} for p in sweep[1:])
    assert hosts(sweep[-1]) == ["198.19.2.4"]
    assert sorted(run.result.hosts) == [ip("198.19.2.4")]  # not the gateway: it is no target


def test_a_gateway_that_does_not_answer_arp_is_the_scans_error(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    run = ScanRun(spec("198.19.2.0/29"), dispatcher, FakeNet())
    sweep = drive(run, dispatcher, engine, Network({}))
    assert kinds(sweep) == ["arp"]
    assert run.errors == ["gateway 198.18.1.254 does not answer ARP"] and run.result.up_count == 0


def test_skipping_discovery_port_scans_every_routed_target(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    network = Network({"198.19.1.2": Device(mac(2), {80}, pings=False)})
    run = ScanRun(spec("198.19.1.0/29", discovery=None), dispatcher, FakeNet())
    [scan] = drive(run, dispatcher, engine, network)
    assert kinds([scan]) == ["tcp_syn"] and len(scan.hosts) == 8
    assert list(run.result.hosts[ip("198.19.1.2")].tcp.open) == [80]


def test_a_discovery_without_probes_port_scans_every_routed_target(
        engine: FakeEngine, dispatcher: Dispatcher) -> None:
    run = ScanRun(spec("198.19.1.0/30", discovery=Discovery(False, (), ())), dispatcher, FakeNet())
    assert kinds(drive(run, dispatcher, engine, Network({}))) == ["tcp_syn"]


def test_loopback_targets_are_port_scanned_at_the_ip_layer(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    network = Network({"127.0.0.2": Device(ZERO_MAC, {22})})
    run = ScanRun(spec("127.0.0.0/30"), dispatcher, FakeNet())
    [scan] = drive(run, dispatcher, engine, network)
    assert kinds([scan]) == ["tcp_syn"] and scan.flags & plans.FLAG_LOOPBACK and set(scan.macs) == {ZERO_MAC}
    assert list(run.result.hosts) == [ip("127.0.0.2")]


def test_targets_without_a_route_are_the_scans_error_and_nothing_is_planned(
        engine: FakeEngine, dispatcher: Dispatcher) -> None:
    run = ScanRun(spec("198.19.200.0/30"), dispatcher, FakeNet())
    assert run.errors and "no route" in run.errors[0] and run.done and run.progress() == (0, 0)
    run.step()
    assert engine.take() == []


def test_groups_run_one_at_a_time_in_the_order_they_were_queued(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    network = Network({"198.18.0.1": Device(mac(1)), "198.19.1.1": Device(mac(2))})
    run = ScanRun(spec("198.18.0.0/30,198.19.1.0/30"), dispatcher, FakeNet())
    run.step()
    assert {PROBES[s.plan.kind].name for s in dispatcher.slots if s} == {"icmp_echo", "tcp_syn", "tcp_ack"}
    sweep = drive(run, dispatcher, engine, network)
    assert kinds(sweep) == ["icmp_echo", "tcp_syn", "tcp_ack", "arp", "tcp_syn", "tcp_syn"]
    assert sorted(run.result.hosts) == [ip("198.18.0.1"), ip("198.19.1.1")]


def test_a_port_scan_past_the_host_budget_is_cut_and_its_answering_hosts_marked(
        engine: FakeEngine, dispatcher: Dispatcher) -> None:
    network = Network({"198.19.1.2": Device(mac(2), {22})})
    run = ScanRun(spec("198.19.1.0/30", discovery=None, host_timeout_s=0.05), dispatcher, FakeNet())
    run.step()
    engine.serve(network.answer, finish=lambda plan: False)  # answers, but never finishes
    dispatcher.poll()
    run.step()
    assert not run.done
    time.sleep(0.1)
    run.step()
    assert run.done and dispatcher.free_slot == 0 and dispatcher.by_gen == {}
    assert [h.timed_out for h in run.result.hosts.values()] == [True]  # only the host that answered
    assert run.progress() == (4 * len(PORTS),) * 2


def test_a_ping_sweep_is_never_cut_by_the_host_budget(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    run = ScanRun(spec("198.19.1.0/30", host_timeout_s=0.01), dispatcher, FakeNet())
    run.step()
    engine.serve(Network({}).answer, finish=lambda plan: False)
    time.sleep(0.05)
    dispatcher.poll()
    run.step()
    assert len(run.running) == 3 and not run.done


def test_progress_counts_the_finished_shards_of_running_plans(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    ports = tuple(range(1, 1025))
    run = ScanRun(spec("198.19.1.0/29", discovery=None, ports=ports), dispatcher, FakeNet())
    run.step()
    [sub] = [s for s in dispatcher.slots if s]
    assert (sub.plan.shards, sub.plan.shard_size) == (2, 4096)  # one per worker
    assert run.progress() == (0, 8 * 1024)
    engine.done(engine.take()[0])
    dispatcher.poll()
    run.step()
    assert run.progress() == (4096, 8 * 1024) and not run.done


def test_a_plan_the_engine_refuses_fails_the_whole_scan(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    run = ScanRun(spec("198.19.1.0/29,198.19.2.0/29"), dispatcher, FakeNet())
    run.step()
    [first, *_] = engine.take()
    engine.report(first.worker, pack_result(R_REFUSED, plan_gen=first.job.gen, a=REFUSE_TARGET))
    dispatcher.poll()
    assert run.failure == "the engine refused the plan: target outside the policy"
    assert run.cancelled and run.done and dispatcher.by_gen == {} and dispatcher.free_slot == 0
    run.step()
    assert engine.take() == []  # nothing more is planned


def test_cancel_retires_every_running_plan(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    run = ScanRun(spec("198.19.1.0/28"), dispatcher, FakeNet())
    run.step()
    assert len(dispatcher.by_gen) == 3
    run.cancel()
    assert run.done and dispatcher.by_gen == {} and run.failure is None
    assert all(plans.generation(buf) == 0 for buf in engine.shared.plans)
