"""Stealth against the detectors sysadmins run (issue 12): a real daemon in the detector lab's
scanner namespace (Debian's scanlogd and psad on every lab host) scans every lab host at the
default stealth level's pace, driven through its API on the Unix socket, while tcpdump records
the scanner's side of the wire. It finds every open port of the truth, raises no scanlogd alert
and no psad signature match of the probes' shape, completes no handshake, never sends a host
two SYNs within the gap, and its SYNs carry the same header fields as the kernel's own
connect() SYN. nmap -sS -T4 and -T3 on the same hosts and ports raise a scanlogd alert on every
host: the detectors do see scans.

Ports: the top 100, through `custom` with the default level's gap, jitter, rate cap and retries
(and no ping sweep, as stealth), since the stealth profile takes no port list and its top 1000
at a 3.5-4.5 s gap per host take about 67 min, over CI's budget; bench/stealth.py runs the
stealth profile itself on the top 1000. Its device profiling (vendor, OS guess, reverse DNS
through the lab's resolver) is left out: custom's would bring service detection's connections
too. About 14 minutes: 100 ports x 4 s per host and the retries of the filtered ports take
about 7, but the scan paces the on-link hosts first and the routed one after them (the runner
starts one group of works at a time), so twice that.

psad: only its signatures that test something of a probe's shape count (shape_only); those
that any SYN to their port matches (VNC's 5900, ...) fire on a browser's connect() as well, and
no probe can avoid them but by not probing the port. Its danger level counts packets per source
over hours: no scan of 400 ports stays under it, so it is not asserted.
"""

from __future__ import annotations

import errno
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dpkt
import httpx
import pytest

from netscand.lab import Lab, detectors
from netscand.lab.harness import (
    ReachableTemp,
    all_hosts,
    capture,
    open_ports,
    running_daemon,
    truth_open,
)
from netscand.scan.ports import top_ports
from netscand.scan.profiles import DEFAULT_LEVEL, STEALTH_LEVELS
from netscand.statuses import FINISHED
from tests.engine.test_synshape_netns import fields

pytestmark = pytest.mark.lab

PORTS = top_ports(100)
LEVEL = STEALTH_LEVELS[DEFAULT_LEVEL]
# The reference connect()'s port: closed on the lab's hosts, outside the scan's ports and no
# psad signature's, so its one SYN (answered by a RST) raises nothing and is told apart.
REFERENCE_PORT = 4
SCAN_TIMEOUT_S = 900
SYN, RST, ACK = dpkt.tcp.TH_SYN, dpkt.tcp.TH_RST, dpkt.tcp.TH_ACK


@dataclass(frozen=True)
class Seen:
    """A TCP packet on the scanner's interface: capture time (s), addresses, ports, flags, frame."""
    t: float
    src: str
    dst: str
    sport: int
    dport: int
    flags: int
    frame: bytes


@dataclass
class StealthRun:
    scan: dict[str, Any]  # GET /scans/{id} once finished
    result: dict[str, Any]  # GET /scans/{id}/result
    report: detectors.Report  # what the detectors flagged from the capture's start to the scan's end
    packets: list[Seen]
    reference: Seen  # the kernel's connect() SYN


def scanner_ip(lab: Lab) -> str:
    return str(lab.truth["scanner"]["ip"])


def body(lab: Lab) -> dict[str, Any]:
    """The stealth profile's default level on the top 100 ports (see the module's docstring)."""
    return {"target": all_hosts(lab), "profile": "custom", "ports": list(PORTS), "host_gap_ms": LEVEL.gap_ms,
            "jitter_ms": LEVEL.jitter_ms, "rate": LEVEL.rate_cap, "retries": LEVEL.retries, "skip_discovery": True}


def wait_finished(client: httpx.Client, scan_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + SCAN_TIMEOUT_S
    while time.monotonic() < deadline:
        scan: dict[str, Any] = client.get(f"/api/v1/scans/{scan_id}").json()
        if scan["status"] in FINISHED:
            return scan
        time.sleep(2)
    raise AssertionError(f"scan {scan_id} not finished in {SCAN_TIMEOUT_S} s: {scan}")


def read_capture(pcap: Path) -> list[Seen]:
    out = []
    with open(pcap, "rb") as f:
        for t, frame in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(frame).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
                tcp = ip.data
                out.append(Seen(float(t), dpkt.utils.inet_to_str(ip.src), dpkt.utils.inet_to_str(ip.dst),
                                tcp.sport, tcp.dport, tcp.flags, bytes(frame)))
    return out


def kernel_connect(lab: Lab, ip: str) -> None:
    """One connect() from the scanner namespace to a closed port: one SYN, refused by a RST."""
    script = (f"import socket; s = socket.socket(); s.settimeout(5); "
              f"assert s.connect_ex(({ip!r}, {REFERENCE_PORT})) == {errno.ECONNREFUSED}")
    subprocess.run(lab.scanner_argv(["python3", "-c", script]), check=True, timeout=30)


@pytest.fixture(scope="module")
def stealth(detector_lab: Lab, tmp_path_factory: ReachableTemp) -> Iterator[StealthRun]:
    """The one stealth scan this module's assertions share, captured and judged by the detectors."""
    lab, pcap = detector_lab, tmp_path_factory.mktemp("stealth") / "scan.pcap"
    reference_host = lab.truth["hosts"][0]
    assert REFERENCE_PORT not in {*reference_host["open"], *reference_host["filtered"], *PORTS}
    time.sleep(detectors.SCANLOGD_DELAY_S + 0.5)  # apart from an earlier test's scan, for scanlogd
    since = detectors.mark(lab)
    with running_daemon(lab) as daemon, daemon.unix() as client:
        with capture(lab, pcap, "tcp"):
            kernel_connect(lab, reference_host["ip"])
            started = client.post("/api/v1/scans/start", json=body(lab))
            assert started.status_code == 202, started.text
            scan = wait_finished(client, started.json()["id"])
            result = client.get(f"/api/v1/scans/{scan['id']}/result").json()
    report = detectors.alerts(lab, since=since, settle_s=1)
    packets = read_capture(pcap)
    [reference] = [p for p in packets if p.dport == REFERENCE_PORT and p.flags == SYN]
    yield StealthRun(scan, result, report, packets, reference)


def scanner_syns(run: StealthRun, source: str) -> list[Seen]:
    """The scan's SYNs, the reference connect()'s left out."""
    return [p for p in run.packets if p.src == source and p.flags == SYN and p != run.reference]


def test_the_stealth_scan_finds_every_open_port_of_the_truth(stealth: StealthRun, detector_lab: Lab) -> None:
    assert stealth.scan["status"] == "completed", stealth.scan
    assert open_ports(stealth.result) == truth_open(detector_lab, PORTS)


def test_no_scanlogd_alert_and_no_psad_signature_of_the_probes_shape(stealth: StealthRun, detector_lab: Lab) -> None:
    report, source = stealth.report, scanner_ip(detector_lab)
    assert report.scanlogd_hosts(source) == set()
    assert report.scanlogd == [] and report.flooded == set() and report.unparsed == []
    assert report.signatures(source, shape_only=True) == []
    # What psad saw: each host's firewall logged the probes (the detector had them to judge).
    assert report.until.kernel > 0 and source in report.psad


def test_every_host_gets_every_port_one_syn_per_gap_at_most(stealth: StealthRun, detector_lab: Lab) -> None:
    per_host: dict[str, list[Seen]] = defaultdict(list)
    for p in scanner_syns(stealth, scanner_ip(detector_lab)):
        per_host[p.dst].append(p)
    assert set(per_host) == set(all_hosts(detector_lab))
    for host, syns in per_host.items():
        assert {p.dport for p in syns} == set(PORTS), host
        times = sorted(p.t for p in syns)
        gaps = [b - a for a, b in zip(times, times[1:])]
        # Capture times on the scanner's own interface: the engine's send times, not the wire's.
        assert min(gaps) >= LEVEL.gap_ms / 1000, (host, min(gaps))


def test_no_handshake_is_completed(stealth: StealthRun, detector_lab: Lab) -> None:
    source = scanner_ip(detector_lab)
    answered = {(p.dst, p.dport, p.src, p.sport) for p in stealth.packets if p.flags & (SYN | ACK) == SYN | ACK}
    assert answered  # the open ports answered: the check below is not vacuous
    sent = [p for p in stealth.packets if p.src == source]
    bare_acks = [p for p in sent if p.flags & (ACK | RST | SYN) == ACK]
    assert bare_acks == []
    assert {p.flags for p in sent} <= {SYN, RST, RST | ACK}


def test_every_syn_carries_the_kernels_connect_syn_fields(stealth: StealthRun, detector_lab: Lab) -> None:
    """TTL, DF, TOS and its ECN bits, window, TCP flags (ECE, CWR), option kinds, order and values
    (the timestamp value aside: it differs per connection): `fields` of the engine's own test."""
    reference = fields(stealth.reference.frame)
    different = [(p.dst, p.dport, fields(p.frame)) for p in scanner_syns(stealth, scanner_ip(detector_lab))
                 if fields(p.frame) != reference]
    assert different == [], reference


def nmap(lab: Lab, template: str) -> None:
    time.sleep(detectors.SCANLOGD_DELAY_S + 0.5)  # or scanlogd takes it for the last scan going on
    argv = ["nmap", "-sS", template, "-n", "-Pn", "-p", ",".join(map(str, PORTS)), *all_hosts(lab)]
    subprocess.run(lab.scanner_argv(argv), check=True, capture_output=True, timeout=300)


@pytest.mark.parametrize("template", ["-T4", "-T3"])
def test_nmap_on_the_same_hosts_and_ports_raises_an_alert_on_every_host(stealth: StealthRun, detector_lab: Lab,
                                                                        template: str) -> None:
    """After the stealth scan (the fixture), so the detectors run and watch in the same lab."""
    since = detectors.mark(detector_lab)
    nmap(detector_lab, template)
    report = detectors.alerts(detector_lab, since=since, settle_s=1)
    assert report.scanlogd_hosts(scanner_ip(detector_lab)) == {h["name"] for h in detector_lab.truth["hosts"]}
