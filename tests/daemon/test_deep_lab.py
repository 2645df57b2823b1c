"""The `deep` profile against the lab's servers and router: every TCP port, the UDP services,
service detection on both, graded against the ground truth (netscand.lab.grade) by the
one-shot CLI in the lab's scanner namespace.

Only the servers' and the router's addresses are scanned (the imitation hosts add nothing a
deep scan must find, and 65535 ports each). The servers run real UDP daemons (dnsmasq, ntpsec,
tftpd-hpa, memcached, miniupnpd, Net-SNMP; netscand.lab.servers), and s2's firewall rejects one
UDP port with ICMP admin-prohibited and drops another. The other servers keep Linux's ICMP rate
limit, so the scan hears few of their closed UDP ports; identification asks their silent ports
again at the limit's pace (profiling/confirm.py), and they come back closed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from netscand.lab import Lab
from netscand.lab.grade import OK, expected_udp_states, grade, udp_listening
from netscand.scan.ports import deep_udp_ports
from netscand.scan.profiles import PROFILES

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def deep(lab: Lab) -> dict[str, Any]:
    """The deep scan's result document, run once for this module's tests."""
    argv = lab.scanner_argv([sys.executable, "-m", "netscand", "scan", ",".join(_targets(lab.truth)),
                             "--json", "--profile", "deep"])
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _targets(truth: dict[str, Any]) -> list[str]:
    return [h["ip"] for h in truth["hosts"] if h["kind"] == "server"] + [truth["router"]["ips"][0]]


def _graded_hosts(truth: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each scanned address's truth: the servers, and the router by its scanner-side address."""
    found = {h["ip"]: h for h in truth["hosts"] if h["kind"] == "server"}
    found[truth["router"]["ips"][0]] = {**truth["router"], "name": "router"}
    return found


def _ports(device: dict[str, Any], protocol: str, state: str) -> set[int]:
    return {p["port"] for p in device["ports"] if p["protocol"] == protocol and p["state"] == state}


def test_deep_scan_completes_within_its_budget(deep: dict[str, Any], lab: Lab) -> None:
    assert deep["status"] == "completed" and deep["profile"] == "deep"
    assert deep["duration_seconds"] < float(PROFILES["deep"].host_budget_s)
    assert not any(d.get("timed_out") for d in deep["devices"])
    assert {d["ip"] for d in deep["devices"]} == set(_targets(lab.truth))


def test_every_tcp_port_and_udp_service_is_found_open(deep: dict[str, Any], lab: Lab) -> None:
    devices = {d["ip"]: d for d in deep["devices"]}
    for ip, host in _graded_hosts(lab.truth).items():
        device = devices[ip]
        assert _ports(device, "tcp", "open") == set(host["open"]), host["name"]
        assert "open" not in device.get("not_shown", {}) and "open" not in device.get("not_shown_udp", {})
        # Every UDP service is found, and nothing else is called open: no closed port, no silent one.
        assert _ports(device, "udp", "open") == udp_listening(host), host["name"]


def test_services_products_and_versions_on_both_protocols(deep: dict[str, Any], lab: Lab) -> None:
    grades = grade(lab.truth, deep["devices"], udp=None)
    wrong = [f"{g.host} {g.field} {g.where}: expected {g.expected!r}, got {g.got!r}" for g in grades if g.verdict != OK]
    assert wrong == []
    graded = {(g.host, g.where) for g in grades if g.field == "service"}
    expected = {(h["name"], f"udp/{p}") for h in _graded_hosts(lab.truth).values() for p in h.get("udp", {})}
    assert expected <= graded and ("router", "udp/53") in graded
    # Where a daemon announces its version, the UDP answer carried it (dnsmasq, memcached, MiniUPnPd).
    versions = {g.where for g in grades if g.field == "version" and g.where.startswith("udp/")}
    assert versions >= {"udp/53", "udp/11211", "udp/1900"}


def test_udp_states_of_firewalled_closed_and_silent_ports(deep: dict[str, Any], lab: Lab) -> None:
    devices = {d["ip"]: d for d in deep["devices"]}
    for ip, host in _graded_hosts(lab.truth).items():
        device = devices[ip]
        rejected, dropped = set(host.get("udp_filtered", [])), set(host.get("udp_silent", []))
        # Only a firewall's reject is "filtered"; its drop is "open|filtered", as silence is.
        assert _ports(device, "udp", "filtered") == rejected, host["name"]
        assert device.get("not_shown_udp", {}).get("filtered", 0) == 0, host["name"]
        assert dropped <= _ports(device, "udp", "open|filtered"), host["name"]
    s2 = next(h for h in lab.truth["hosts"] if h["name"] == "s2")
    assert s2["udp_filtered"] and s2["udp_silent"]
    # s2 sends every port unreachable (no ICMP rate limit): its closed ports are all closed, and
    # the dropped port is its only silent one, so it is listed.
    device = devices[s2["ip"]]
    assert _ports(device, "udp", "open|filtered") == set(s2["udp_silent"])
    assert "open|filtered" not in device.get("not_shown_udp", {})
    assert device["not_shown_udp"]["closed"] > 25


def test_rate_limited_hosts_closed_udp_ports_are_confirmed_closed(deep: dict[str, Any], lab: Lab) -> None:
    devices = {d["ip"]: d for d in deep["devices"]}
    probed = set(deep_udp_ports())
    limited = {ip: h for ip, h in _graded_hosts(lab.truth).items() if not h.get("udp_filtered")}
    assert len(limited) >= 4
    for ip, host in limited.items():
        device = devices[ip]
        truly_closed = len(probed - expected_udp_states(host).keys())
        closed = len(_ports(device, "udp", "closed")) + device.get("not_shown_udp", {}).get("closed", 0)
        silent = len(_ports(device, "udp", "open|filtered")) + device.get("not_shown_udp", {}).get("open|filtered", 0)
        # Nearly every closed port is confirmed closed (one may lose its ICMP token to another
        # query of the host's); none is more than the truth's, and none is called open.
        assert closed <= truly_closed and 100 * closed >= 95 * truly_closed, (host["name"], closed, truly_closed)
        assert silent <= truly_closed - closed + len(host.get("udp_silent", [])), host["name"]
        assert "udp_icmp_limited" not in device, host["name"]
