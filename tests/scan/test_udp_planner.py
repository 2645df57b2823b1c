"""ScanRun with UDP ports, over the fake engine (fake_engine.py): the UDP work runs beside the
TCP one over the same hosts, at its share of the rate, counted in progress and cut by the
per-host budget; the engine's UDP records (as engine/tally.py's udp_ports shapes them) come back
as the devices' UDP ports."""

from __future__ import annotations

import time
from collections.abc import Iterator

from netscand.engine import plan as plans
from netscand.engine.probes import PROBES
from netscand.engine.shm import R_PORT, R_TALLY, S_CLOSED, S_NONE, S_OPEN, pack_result
from netscand.scan.dispatch import Dispatcher
from netscand.scan.planner import port_scan_of
from netscand.scan.profiles import ScanRequest, resolve
from netscand.scan.runner import ScanRun
from netscand.scan.targets import parse_targets
from netscand.scan.work import Feed
from tests.scan.fake_engine import FakeEngine
from tests.scan.test_runner_unit import (
    LAN,
    PORTS,
    RATE,
    Device,
    FakeNet,
    Network,
    drive,
    hosts,
    ip,
    kinds,
    mac,
    spec,
)

UDP = (53, 123, 161, 500)


class UdpNetwork(Network):
    """Hosts that also answer UDP: a reply from `udp_open`, port unreachable from `udp_closed`,
    silence elsewhere."""

    def __init__(self, devices: dict[str, Device], udp_open: dict[str, set[int]],
                 udp_closed: dict[str, set[int]]) -> None:
        super().__init__(devices)
        self.udp_open = {ip(a): p for a, p in udp_open.items()}
        self.udp_closed = {ip(a): p for a, p in udp_closed.items()}

    def answer(self, plan: plans.Plan, shard: int) -> Iterator[bytes]:
        if PROBES[plan.kind].name != "udp":
            yield from super().answer(plan, shard)
            return
        self.plans[plan.gen] = plan
        for host in plan.hosts:  # one shard per plan here: every port of every host
            opened, closed = self.udp_open.get(host, set()), self.udp_closed.get(host, set())
            for port in sorted(opened & set(plan.ports)):
                yield pack_result(R_PORT, state=S_OPEN, plan_gen=plan.gen, ip=host, port=port, ttl=64)
            silent = [p for p in plan.ports if p not in opened | closed]
            if len(silent) < len(plan.ports):
                yield pack_result(R_TALLY, plan_gen=plan.gen, shard=shard, ip=host, a=len(closed), b=len(silent))
                for port, state in [(p, S_CLOSED) for p in sorted(closed)] + [(p, S_NONE) for p in silent]:
                    yield pack_result(R_PORT, state=state, plan_gen=plan.gen, ip=host, port=port)


def test_the_udp_probe_type_is_found_by_its_protocol() -> None:
    probe = port_scan_of("udp")
    assert (probe.name, probe.kind, probe.port_states) == ("udp", 5, True)
    assert port_scan_of("tcp").name == "tcp_syn"


def test_on_link_hosts_get_a_udp_plan_beside_the_syn_plan(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    network = UdpNetwork({"198.18.0.5": Device(mac(5), {22}), "198.18.0.9": Device(mac(9))},
                         udp_open={"198.18.0.5": {53}}, udp_closed={"198.18.0.5": {123, 161}})
    run = ScanRun(spec("198.18.0.0/28", udp_ports=UDP), dispatcher, FakeNet())
    arp, syn, udp = drive(run, dispatcher, engine, network)
    assert kinds([arp, syn, udp]) == ["arp", "tcp_syn", "udp"]
    assert hosts(udp) == hosts(syn) == ["198.18.0.5", "198.18.0.9"] and udp.macs == syn.macs == (mac(5), mac(9))
    assert udp.ports == UDP and syn.ports == PORTS
    # The rate is split by probes, so both plans take as long: 2 TCP ports, 4 UDP ones each
    # sent 1 + retries (1) times, as nearly every UDP port stays silent.
    assert (syn.rate, udp.rate) == (RATE * 2 / 10, RATE * 8 / 10)
    assert run.progress() == (16 + 2 * (len(PORTS) + len(UDP)),) * 2
    h5 = run.result.hosts[ip("198.18.0.5")]
    assert (h5.tcp.probed, h5.states("udp").probed) == (len(PORTS), len(UDP))
    device = run.result.device(h5)
    assert [(p["port"], p["protocol"], p["state"]) for p in device["ports"]] == [
        (22, "tcp", "open"), (53, "udp", "open"), (123, "udp", "closed"), (161, "udp", "closed"),
        (500, "udp", "open|filtered")]
    assert device["not_shown"] == {"closed": 1}  # TCP 80: the fake engine counts it, lists none
    # 123 and 161 answered unreachable, 500 did not: one silent port beside two closed ones is a
    # drop, not a rate limit.
    assert "udp_icmp_limited" not in device


def test_routed_hosts_that_answer_the_sweep_get_both_plans(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    network = UdpNetwork({"198.19.1.3": Device(mac(3), {22})}, udp_open={"198.19.1.3": {161}}, udp_closed={})
    run = ScanRun(spec("198.19.1.0/28", udp_ports=UDP), dispatcher, FakeNet())
    plan_list = drive(run, dispatcher, engine, network)
    assert kinds(plan_list) == ["icmp_echo", "tcp_syn", "tcp_ack", "tcp_syn", "udp"]
    assert hosts(plan_list[-1]) == ["198.19.1.3"] and set(plan_list[-1].macs) == {mac(254)}
    assert list(run.result.hosts[ip("198.19.1.3")].states("udp").open) == [161]


def test_no_udp_ports_no_udp_plan(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    network = UdpNetwork({"198.18.0.5": Device(mac(5), {22})}, udp_open={}, udp_closed={})
    run = ScanRun(spec("198.18.0.0/29"), dispatcher, FakeNet())
    assert kinds(drive(run, dispatcher, engine, network)) == ["arp", "tcp_syn"]


def test_a_udp_plan_past_the_host_budget_is_cut_too(engine: FakeEngine, dispatcher: Dispatcher) -> None:
    network = UdpNetwork({"198.19.1.2": Device(mac(2), {22})}, udp_open={"198.19.1.2": {53}}, udp_closed={})
    run = ScanRun(spec("198.19.1.0/30", discovery=None, host_timeout_s=0.05, udp_ports=UDP), dispatcher, FakeNet())
    run.step()
    # TCP finishes; UDP answers but never finishes (its retries, waiting on ICMP rate limits).
    engine.serve(network.answer, finish=lambda plan: PROBES[plan.kind].name != "udp")
    dispatcher.poll()
    run.step()
    assert not run.done and [w.probe.name for _, w, _ in run.running] == ["udp"]
    time.sleep(0.1)
    run.step()
    assert run.done and dispatcher.by_gen == {}
    assert [h.timed_out for h in run.result.hosts.values()] == [True]
    assert run.progress() == (4 * (len(PORTS) + len(UDP)),) * 2


def test_a_plan_holds_what_fits_the_budget_with_udp_probes_counted() -> None:
    tcp_only = spec("198.18.0.0/16", ports=tuple(range(1, 1001)), host_timeout_s=10.0)
    both = spec("198.18.0.0/16", ports=tuple(range(1, 1001)), host_timeout_s=10.0, udp_ports=tuple(range(1, 1001)))
    assert tcp_only.hosts_per_plan(1) == int(10 * RATE / 2 / 1000)
    assert both.hosts_per_plan(1) == int(10 * RATE / 2 / (1000 + 1000 * 2))  # UDP: 1 + retries (1) each


def test_a_deep_scans_udp_plan_ends_with_its_tcp_plan_within_the_budget() -> None:
    """Deep at 1000 probes/s and the default 3 retries: split by port count, the UDP plan
    (104 ports, nearly all silent, so sent 4 times each) took 4 times as long as the TCP one
    and ran out of the 600 s budget."""
    deep = resolve(ScanRequest("198.18.0.0/24", profile="deep"), parse_targets("198.18.0.0/24"),
                   rate=1000.0, retries=3)
    assert deep.host_timeout_s == 600 and deep.udp_sends == 4
    per_plan = deep.hosts_per_plan(1)
    feed = Feed(LAN, deep.targets, per_plan,
                ((port_scan_of("tcp"), deep.ports), (port_scan_of("udp"), deep.udp_ports)), None, False,
                deep.udp_sends)
    tcp, udp = feed.cut(0)
    tcp_s = per_plan * len(tcp.ports) / (deep.rate * tcp.rate_part)
    udp_s = per_plan * len(udp.ports) * deep.udp_sends / (deep.rate * udp.rate_part)
    assert abs(tcp_s - udp_s) < 1e-6 and udp_s <= deep.host_timeout_s / 2
