"""The lab servers' ground truth and the grading rules, as pure functions: no root, no lab."""

from __future__ import annotations

import pytest

from netscand.lab import servers, topology, truth
from netscand.lab.grade import (
    NAME_QUERY_PORTS,
    OK,
    UNKNOWN,
    WRONG,
    grade,
    identity_grades,
)
from netscand.profiling.names import QUERIES
from netscand.profiling.vendor import vendor


@pytest.mark.parametrize(("debian", "upstream"), [
    ("1:9.2p1-2+deb12u10", "9.2p1"), ("1.22.1-9+deb12u11", "1.22.1"), ("5:7.0.15-1~deb12u10", "7.0.15"),
    ("1:10.11.19-0+deb12u1", "10.11.19"), ("5.9.3+dfsg-2+deb12u1", "5.9.3"), ("2.90-4~deb12u2", "2.90"),
    ("3.0.3-13+b2", "3.0.3"),
])
def test_upstream_version(debian: str, upstream: str) -> None:
    assert servers.upstream_version(debian) == upstream


def test_servers_join_the_plan_with_real_vendors() -> None:
    plan = truth.plan("nsd", 8, 1, 0, 0, with_servers=True)
    hosts = plan["hosts"]
    found = [h for h in hosts if h["kind"] == "server"]
    assert [h["name"] for h in found] == [s.name for s in servers.SERVERS]
    assert len({h["ip"] for h in hosts}) == len({h["mac"] for h in hosts}) == len(hosts)
    for host in found:
        assert vendor(host["mac"]) == host["vendor"]  # the catalogue names the IEEE registry's owner
        assert host["open"] == sorted(int(p) for p in host["services"])
        for want in (*host["services"].values(), *host["udp"].values()):
            # A daemon whose answers don't name it can't announce a version either.
            assert want["service"] and (want["product"] or want["version"] is None)
        assert host["tuned"] == (host["sysctls"] != {"net.ipv4.ip_default_ttl": 64})
    assert truth.plan("nsd", 8, 1, 0, 0)["hosts"] == hosts[:8]  # imitation hosts do not move


def test_grades_are_lenient_about_wording_not_about_facts() -> None:
    plan = truth.plan("nsd", 1, 1, 0, 0, with_servers=True)
    s1 = next(h for h in plan["hosts"] if h["name"] == "s1")
    ssh = s1["services"]["22"]["version"]
    device = {"ip": s1["ip"], "os_guess": "Linux 4.15 - 5.8", "ports": [
        {"port": 22, "protocol": "tcp", "state": "open", "service": "SSH", "product": "OpenSSH",
         "version": f"{ssh} Debian 2+deb12u10"},
        {"port": 80, "protocol": "tcp", "state": "open", "service": "http", "product": "Apache httpd"},
    ]}
    verdicts = {(g.host, g.field, g.where): g.verdict for g in grade(plan, [device])}
    assert verdicts[("s1", "service", "tcp/22")] == OK and verdicts[("s1", "version", "tcp/22")] == OK
    assert verdicts[("s1", "product", "tcp/80")] == WRONG and verdicts[("s1", "version", "tcp/80")] == UNKNOWN
    assert verdicts[("s1", "service", "tcp/443")] == UNKNOWN  # not reported at all
    assert verdicts[("s1", "os", "")] == OK
    # A tuned stack may honestly be unknown, but never something else.
    s2 = next(h for h in plan["hosts"] if h["name"] == "s2")
    for guessed, verdict in ((None, OK), ("Linux (Debian)", OK), ("Windows", WRONG)):
        grades = grade(plan, [{"ip": s2["ip"], "os_guess": guessed}])
        assert [g.verdict for g in grades if g.field == "os" and g.host == "s2"] == [verdict]
    names = {(g.host, g.field): g.verdict for g in identity_grades(plan, [device])}
    assert names[("s1", "hostname")] == UNKNOWN and names[("s1", "mac")] == UNKNOWN


def test_udp_services_and_the_firewall_are_in_the_truth() -> None:
    plan = truth.plan("nsd", 1, 1, 0, 0, with_servers=True)
    servers_by_name = {h["name"]: h for h in plan["hosts"] if h["kind"] == "server"}
    udp = {(name, int(port)): want["service"] for name, h in servers_by_name.items() for port, want in h["udp"].items()}
    assert udp == {("s1", 11211): "memcached", ("s2", 69): "tftp", ("s3", 161): "snmp", ("s3", 123): "ntp",
                   ("s4", 161): "snmp", ("s4", 1900): "ssdp"}
    assert plan["router"]["udp"]["53"]["product"] == "dnsmasq" and plan["router"]["udp"]["53"]["version"]
    firewalled = {name: (h["udp_filtered"], h["udp_silent"]) for name, h in servers_by_name.items() if h["udp_filtered"]}
    assert firewalled == {"s2": ([servers.UDP_REJECTED], [servers.UDP_DROPPED])}
    ruleset = topology._filter_ruleset(servers_by_name["s2"])
    assert ruleset is not None
    assert f"udp dport {{ {servers.UDP_REJECTED} }} reject with icmp type admin-prohibited" in ruleset
    assert f"udp dport {{ {servers.UDP_DROPPED} }} drop" in ruleset and "tcp" not in ruleset
    assert topology._filter_ruleset(servers_by_name["s1"]) is None


def test_the_grader_knows_which_ports_the_name_queries_ask() -> None:
    assert NAME_QUERY_PORTS == {query.port for query in QUERIES}
