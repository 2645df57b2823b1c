"""The UDP probe in the real engine, in the lab: a real Worker on raw sockets in the scanner's
namespace, handed a UDP plan by a real Dispatcher over shared memory, against real stacks.

On one imitation host the test sets up each state a UDP port can be in: a listening server that
answers (open), nothing listening (the kernel's port unreachable: closed), a port nftables
rejects with ICMP administratively prohibited (filtered), and one it drops (silence after the
retry: open|filtered, S_NONE in the tally). Real daemons answer the protocol payloads: the
router's dnsmasq (DNS, 53), a server's Net-SNMP (161) and the lab's NetBIOS responder (137),
and every UDP daemon the lab's servers run (ntpsec, tftpd-hpa from a port of its own,
memcached, miniupnpd's SSDP)."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import Any

import pytest

from netscand.engine import plan as plans
from netscand.engine.probes import udp
from netscand.engine.shm import (
    R_DONE,
    R_PORT,
    R_TALLY,
    S_CLOSED,
    S_NONE,
    S_OPEN,
    S_UNREACH,
    Result,
)
from netscand.lab import Lab
from netscand.lab.namespaces import exec_argv, inside
from tests.engine.solo import run_alone

pytestmark = pytest.mark.lab

OPEN, CLOSED, PROHIBITED, DROPPED = 40001, 40002, 40003, 40004
RULES = (f"table inet nsu_udp {{\n chain input {{\n  type filter hook input priority filter; policy accept;\n"
         f"  udp dport {PROHIBITED} reject with icmp type admin-prohibited\n  udp dport {DROPPED} drop\n }}\n}}\n")


def ip(text: str) -> int:
    return int(IPv4Address(text))


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


@pytest.fixture
def states_host(lab: Lab) -> Iterator[dict[str, Any]]:
    """An on-link imitation host with a UDP server on OPEN and the nftables rules above, both
    gone after the test: the session lab is shared."""
    host = next(h for h in lab.truth["hosts"] if h["kind"] == "imitation" and not h["routed"])
    with inside(host["netns"]):
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((host["ip"], OPEN))
    server.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = server.recvfrom(2048)
            except TimeoutError:
                continue
            server.sendto(b"here: " + data, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    subprocess.run(exec_argv(host["netns"], ["nft", "-f", "-"]), input=RULES, text=True, check=True)
    try:
        yield host
    finally:
        subprocess.run(exec_argv(host["netns"], ["nft", "delete", "table", "inet", "nsu_udp"]), check=False)
        stop.set()
        thread.join()
        server.close()


def run_plan(lab: Lab, targets: list[tuple[int, bytes]], ports: tuple[int, ...]) -> list[Result]:
    truth = lab.truth
    with inside(lab.scanner_ns):
        ifindex = socket.if_nametoindex("scan0")

        def make(slot: int, gen: int) -> plans.Plan:
            return plans.Plan(gen=gen, kind=udp.PROBE.kind, slot=slot, share=1, retries=1, key=b"U" * 16,
                              ifindex=ifindex, src_ip=ip(truth["scanner"]["ip"]), src_mac=mac(truth["scanner"]["mac"]),
                              sport_base=61440, rate=200.0, timeout_init_ms=600, timeout_min_ms=600,
                              timeout_max_ms=600, shard_size=1024, hosts=tuple(t[0] for t in targets),
                              macs=tuple(t[1] for t in targets), ports=ports)

        finished, results, _ = run_alone(make, 15)
    assert finished
    assert [r.shard for r in results if r.kind == R_DONE] == [0]
    return results


def test_udp_port_states_on_real_stacks(lab: Lab, states_host: dict[str, Any]) -> None:
    truth = lab.truth
    router_mac = mac(truth["router"]["mac"])
    router = ip(truth["router"]["ips"][0])
    snmp = next(h for h in truth["hosts"] if h["kind"] == "server" and "161" in h.get("udp", {}))
    netbios = next(h for h in truth["hosts"] if h.get("netbios") and not h["routed"])
    host = ip(states_host["ip"])
    targets = [(host, mac(states_host["mac"])), (router, router_mac),
               (ip(snmp["ip"]), router_mac if snmp["routed"] else mac(snmp["mac"])),
               (ip(netbios["ip"]), mac(netbios["mac"]))]
    results = run_plan(lab, targets, (53, 137, 161, OPEN, CLOSED, PROHIBITED, DROPPED))

    opened = {(r.ip, r.port) for r in results if r.kind == R_PORT and r.state == S_OPEN}
    assert opened == {(host, OPEN), (router, 53), (ip(snmp["ip"]), 161), (ip(netbios["ip"]), 137)}
    on_host = {r.port: r.state for r in results if r.kind == R_PORT and r.ip == host and r.state != S_OPEN}
    assert on_host == {53: S_CLOSED, 137: S_CLOSED, 161: S_CLOSED, CLOSED: S_CLOSED, PROHIBITED: S_UNREACH,
                       DROPPED: S_NONE}
    # closed (a), silent after the retry (b), filtered (win)
    assert [(r.a, r.b, r.win) for r in results if r.kind == R_TALLY and r.ip == host] == [(4, 1, 1)]


def test_every_udp_daemon_of_the_lab_answers_its_payload(lab: Lab) -> None:
    """Each server probed on every lab UDP service port: open exactly where a daemon listens.
    (At most 6 closed ports a host: within Linux's burst of port unreachables.)"""
    truth = lab.truth
    router_mac = mac(truth["router"]["mac"])
    servers = [h for h in truth["hosts"] if h["kind"] == "server" and h.get("udp")]
    expected = {(ip(h["ip"]), int(p)) for h in servers for p in h["udp"]}
    expected.add((ip(truth["router"]["ips"][0]), 53))
    ports = tuple(sorted({port for _, port in expected}))
    assert {69, 123, 161, 1900, 11211} <= set(ports) and len(ports) <= 7
    targets = [(ip(truth["router"]["ips"][0]), router_mac),
               *((ip(h["ip"]), router_mac if h["routed"] else mac(h["mac"])) for h in servers)]
    results = run_plan(lab, targets, ports)
    assert {(r.ip, r.port) for r in results if r.kind == R_PORT and r.state == S_OPEN} == expected
