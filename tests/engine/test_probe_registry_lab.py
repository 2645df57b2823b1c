"""A probe type added by a test (tests/engine/probe_udp_dns.py) with one register() line runs
in the real engine in the lab: a real Worker on raw sockets in the scanner's namespace, handed
its plan by a real Dispatcher over shared memory, sends the new probe's frames out of scan0, its
receive filter lets the new probe's UDP replies in, and the replies are matched and tallied.

Targets: the lab router's DNS server (UDP 53 open: dnsmasq answers) and two on-link imitation
hosts (nothing on UDP 53: their kernels answer ICMP port unreachable)."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from netscand.engine import plan as plans
from netscand.engine.probes import PROBES, ProbeType, register
from netscand.engine.shm import R_DONE, R_PORT, R_TALLY, S_CLOSED, S_OPEN
from netscand.lab import Lab
from netscand.lab.namespaces import inside
from tests.engine import probe_udp_dns
from tests.engine.solo import run_alone

pytestmark = pytest.mark.lab


@pytest.fixture
def udp_dns() -> Iterator[ProbeType]:
    register(probe_udp_dns.PROBE)  # all it takes to add a probe type
    yield probe_udp_dns.PROBE
    del PROBES[probe_udp_dns.PROBE.kind]  # the rest of the session knows only the real ones


def ip(text: str) -> int:
    return int(IPv4Address(text))


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def tx_packets(lab: Lab) -> int:
    out = subprocess.run(["ip", "-n", lab.scanner_ns, "-j", "-s", "link", "show", "scan0"],
                         check=True, capture_output=True, text=True).stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])


def test_a_probe_type_registered_by_a_test_sends_and_its_replies_are_tallied(lab: Lab, udp_dns: ProbeType) -> None:
    truth = lab.truth
    router = (ip(truth["router"]["ips"][0]), mac(truth["router"]["mac"]))
    closed = [(ip(h["ip"]), mac(h["mac"])) for h in truth["hosts"] if h["kind"] == "imitation" and not h["routed"]][:2]
    targets = [router, *closed]
    sent_before = tx_packets(lab)
    with inside(lab.scanner_ns):  # the worker's raw sockets and the interface index are the lab's
        ifindex = socket.if_nametoindex("scan0")

        def make(slot: int, gen: int) -> plans.Plan:
            return plans.Plan(gen=gen, kind=udp_dns.kind, slot=slot, share=1, retries=1, key=b"u" * 16,
                              ifindex=ifindex, src_ip=ip(truth["scanner"]["ip"]), src_mac=mac(truth["scanner"]["mac"]),
                              sport_base=61440, rate=100.0, timeout_init_ms=500, timeout_min_ms=100,
                              timeout_max_ms=1000, shard_size=1024, hosts=tuple(t[0] for t in targets),
                              macs=tuple(t[1] for t in targets), ports=(53,))

        finished, results, matched = run_alone(make, 10)
    assert finished
    assert tx_packets(lab) - sent_before >= len(targets)  # its frames left scan0
    assert matched >= len(targets)  # every target answered, matched by the new parser
    opened = {(r.ip, r.port) for r in results if r.kind == R_PORT and r.state == S_OPEN}
    assert opened == {(router[0], 53)}
    tallies = {r.ip: (r.a, r.b) for r in results if r.kind == R_TALLY}  # the new type's tally
    assert tallies == {router[0]: (0, 0), **{host: (1, 0) for host, _ in closed}}
    listed = {(r.ip, r.port) for r in results if r.kind == R_PORT and r.state == S_CLOSED}
    assert listed == {(host, 53) for host, _ in closed}
    assert [r.shard for r in results if r.kind == R_DONE] == [0]
