"""The lab as a scanner sees it: ports, routes, impairments, teardown. Needs root."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute, netns

from netscand.lab import Lab, LabError, procs, status, truth
from netscand.lab import lab as lab_module

pytestmark = pytest.mark.lab

NSPROBE = Path(__file__).with_name("nsprobe.py")
LabFactory = Callable[..., AbstractContextManager[Lab]]
Result = dict[str, Any]


def in_ns(ns: str, *args: str) -> Any:
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, str(NSPROBE), *args],
                         check=True, capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout)


def probe_tcp(lab: Lab, targets: list[tuple[str, int]], timeout: float = 1.0) -> dict[tuple[str, int], Result]:
    results = in_ns(lab.scanner_ns, "tcp", str(timeout), *(f"{ip}:{port}" for ip, port in targets))
    return {(r["target"].rsplit(":", 1)[0], int(r["target"].rsplit(":", 1)[1])): r for r in results}


def ping(lab: Lab, ip: str, count: int, interval: float = 0.005) -> Result:
    result: Result = in_ns(lab.scanner_ns, "ping", ip, str(count), str(interval))
    return result


def closed_port(host: Result) -> int:
    return next(p for p in (1, 7, 9, 13, 37, 79, 65000) if p not in host["open"] + host["filtered"])


def sample_hosts(lab: Lab) -> list[Result]:
    hosts = lab.truth["hosts"]
    return [h for h in hosts if not h["routed"]][:3] + [h for h in hosts if h["routed"]][:1]


def test_open_ports_accept_and_send_their_banners(lab: Lab) -> None:
    targets = [(h["ip"], p) for h in sample_hosts(lab) for p in h["open"]]
    results = probe_tcp(lab, targets)
    banners = {(h["ip"], int(p)): b for h in lab.truth["hosts"] for p, b in h["banners"].items()}
    for target in targets:
        assert results[target]["result"] == "open", target
        assert results[target]["banner"] == banners.get(target, ""), target
    assert banners, "seed 1 should give some banners"


def test_closed_port_is_refused_and_filtered_port_times_out(lab: Lab) -> None:
    hosts = sample_hosts(lab)
    closed = [(h["ip"], closed_port(h)) for h in hosts]
    filtered = [(h["ip"], h["filtered"][0]) for h in hosts]
    results = probe_tcp(lab, closed + filtered, timeout=0.5)
    assert all(results[t]["result"] == "refused" for t in closed), results
    assert all(results[t]["result"] == "timeout" for t in filtered), results


def test_hosts_answer_with_their_ttl_and_mac(lab: Lab) -> None:
    for host in lab.truth["hosts"]:
        reply = ping(lab, host["ip"], 1)
        assert reply["received"] == 1, host["name"]
        # A routed host's reply crosses the router, which takes one off its TTL.
        assert reply["ttls"] == [host["ttl"] - 1 if host["routed"] else host["ttl"]], host["name"]
    with IPRoute(netns=lab.scanner_ns, flags=0) as ipr:
        neighbours = {n.get("dst"): n.get("lladdr") for n in ipr.neigh("dump")}
    for host in lab.truth["hosts"]:
        if not host["routed"]:
            assert neighbours[host["ip"]] == host["mac"]
    assert neighbours[lab.truth["scanner"]["gateway"]] == lab.truth["router"]["mac"]
    assert {h["ttl"] for h in lab.truth["hosts"]} == set(truth.TTLS)


def test_scanner_namespace_has_only_its_link_and_lab_routes(lab: Lab) -> None:
    with IPRoute(netns=lab.scanner_ns, flags=0) as ipr:
        links = {link.get("ifname"): link.get("address") for link in ipr.link("dump")}
        main = {(r.get("dst"), r.get("dst_len"), r.get("gateway")) for r in ipr.route("dump", table=254)}
    assert set(links) == {"lo", "scan0"}
    assert links["scan0"] == lab.truth["scanner"]["mac"]
    assert main == {("198.18.0.0", 24, None), ("198.19.0.0", 24, "198.18.0.254")}


def test_no_lab_namespace_has_a_default_route(lab: Lab) -> None:
    names = netns.listnetns()
    lab_names = [n for n in names if n.startswith(f"{lab.prefix}-")]
    assert len(lab_names) == 3 + len(lab.truth["hosts"])
    for name in lab_names:
        with IPRoute(netns=name, flags=0) as ipr:
            defaults = [r for r in ipr.route("dump") if r.get("dst_len") == 0 and r.get("table") != 255]
        assert defaults == [], name


def test_state_file_holds_the_truth(lab: Lab) -> None:
    assert status(lab.prefix) == lab.truth
    assert Lab.load(lab.prefix).truth == lab.truth
    assert procs.is_helper(lab.truth["services_pid"], lab.state_file)
    assert status("nobodyhere") is None
    with pytest.raises(LabError):
        Lab.load("nobodyhere")


def test_services_take_a_burst_of_connections(lab: Lab) -> None:
    host = lab.truth["hosts"][0]
    port = host["open"][0]
    assert in_ns(lab.scanner_ns, "burst", host["ip"], str(port), "800") == {"connected": 800}


def test_loss_drops_about_that_share_and_can_change(lab_factory: LabFactory) -> None:
    with lab_factory(hosts=2, loss_pct=20) as lossy:
        target = lossy.truth["hosts"][0]["ip"]
        # Resolve the MAC first: lost ARP would otherwise count as a burst of lost pings.
        assert any(ping(lossy, target, 1)["received"] for _ in range(30))
        reply = ping(lossy, target, 200)
        # 20% each way loses about 36% of round trips.
        assert 0.15 <= 1 - reply["received"] / reply["sent"] <= 0.6, reply["received"]
        lossy.set_loss(0)
        assert (status(lossy.prefix) or {}).get("loss_pct") == 0
        assert ping(lossy, target, 100)["received"] >= 99


def test_delay_adds_latency_both_ways(lab_factory: LabFactory) -> None:
    with lab_factory(hosts=2, delay_ms=50) as slow:
        host = slow.truth["hosts"][0]
        reply = ping(slow, host["ip"], 5, 0.05)
        assert reply["received"] == 5
        assert min(reply["rtts_ms"]) >= 90
        routed = slow.truth["hosts"][1]
        assert routed["routed"]
        results = probe_tcp(slow, [(routed["ip"], p) for p in routed["open"]], timeout=2)
        assert all(r["result"] == "open" for r in results.values())
        assert procs.is_helper(slow.truth["relay_pid"], slow.state_file)


def test_a_wide_routed_lab_routes_the_slash16_and_drops_its_dead_addresses(lab_factory: LabFactory) -> None:
    """--wide-routed: the scanner reaches all of 198.19.0.0/16 through the router, whose /24 is
    live and the rest a blackhole: a dead address is silence, and nothing gets a way out."""
    with lab_factory(hosts=2, wide_routed=True) as wide:
        with IPRoute(netns=wide.scanner_ns, flags=0) as ipr:
            main = {(r.get("dst"), r.get("dst_len"), r.get("gateway")) for r in ipr.route("dump", table=254)}
        assert main == {("198.18.0.0", 24, None), ("198.19.0.0", 16, "198.18.0.254")}
        with IPRoute(netns=wide.truth["router"]["netns"], flags=0) as ipr:
            routes = {(r.get("dst"), r["dst_len"], r["type"]) for r in ipr.route("dump", table=254)}
        assert ("198.19.0.0", 16, 6) in routes  # RTN_BLACKHOLE
        assert not any(dst_len == 0 for _, dst_len, _ in routes)
        routed = next(h for h in wide.truth["hosts"] if h["routed"])
        dead = ("198.19.77.10", routed["open"][0])
        results = probe_tcp(wide, [(routed["ip"], p) for p in routed["open"]] + [dead], timeout=1)
        assert results.pop(dead)["result"] == "timeout"
        assert all(r["result"] == "open" for r in results.values())


def _root_links() -> set[tuple[int, str]]:
    with IPRoute() as ipr:
        return {(link["index"], link.get("ifname")) for link in ipr.link("dump")}


def test_up_replaces_a_stale_lab_and_down_leaves_nothing(lab_factory: LabFactory) -> None:
    before = _root_links()
    with lab_factory(hosts=3) as first:
        pids = [first.truth["services_pid"]]
        second = Lab.up(hosts=3, prefix=first.prefix)
        assert not procs.is_helper(pids[0], first.state_file)
        pids.append(second.truth["services_pid"])
        assert _root_links() == before  # nothing of the lab ever appears in the host namespace
    assert [n for n in netns.listnetns() if n.startswith(f"{first.prefix}-")] == []
    assert not any(procs.is_helper(pid, first.state_file) for pid in pids)
    assert not first.state_file.exists()
    assert _root_links() == before
    first.down()  # idempotent


def test_failed_build_leaves_nothing(lab_factory: LabFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> int:
        raise LabError("services refused to start")

    monkeypatch.setattr(procs, "spawn", refuse)
    with pytest.raises(LabError, match="services refused"):
        with lab_factory(hosts=2):
            pass
    assert [n for n in netns.listnetns() if n.startswith("nsl-")] == []


def test_down_leaves_a_namespace_with_foreign_interfaces_alone(lab_lock: None) -> None:
    name = "nsl-h99"
    netns.create(name)
    try:
        with IPRoute(netns=name, flags=0) as ipr:
            ipr.link("add", ifname="v0", kind="veth", peer="v1")
            ipr.link("add", ifname="ifb9", kind="ifb")  # stands for any interface the lab never makes
        with pytest.raises(LabError, match="nsl-h99"):
            lab_module.teardown("nsl")
        assert name in netns.listnetns()
    finally:
        netns.remove(name)
