"""The target policy, enforced by the running daemon in the lab: a refused target gets not one
probe (a capture of what the scanner's interface sends holds none to any address of the
request) and 403 naming the range; excluded addresses inside an allowed block are skipped and
counted.

The capture, not the interface's TX counter: the counter also moves for the kernel's own frames
(its RST to an earlier scan's late SYN-ACK, an ARP reply), which CI once caught by one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dpkt
import pytest

from netscand.lab import Lab
from netscand.lab.harness import Daemon, capture, start_daemon, stop_daemon
from tests.daemon.test_e2e import wait_for

pytestmark = pytest.mark.lab

POLICY = """[policy]
allowed_targets = ["198.18.0.0/24"]
excluded_targets = ["198.18.0.8/29"]
"""


@pytest.fixture
def policed(lab: Lab, tmp_path: Path) -> Iterator[Daemon]:
    (tmp_path / "netscand.toml").write_text(POLICY)
    daemon = start_daemon(lab, tmp_path / "state", "--config", str(tmp_path / "netscand.toml"))
    try:
        yield daemon
    finally:
        stop_daemon(daemon)


def probes_to(ips: list[str]) -> str:
    """A capture filter for any probe a scan of `ips` would send: a SYN, a UDP datagram, an echo
    request, or a broadcast ARP request ("host" matches ARP's addresses as IP's). Not the
    kernel's own frames to lab hosts (an ARP reply or unicast probe, the RST to an earlier scan's
    late SYN-ACK), which come and go whatever the daemon does."""
    hosts = " or ".join(f"host {ip}" for ip in ips)
    return (f"({hosts}) and ((tcp[tcpflags] & tcp-syn != 0) or udp or icmp[icmptype] == icmp-echo"
            " or (arp and arp[6:2] == 1 and ether broadcast))")


def test_out_of_policy_target_is_refused_before_a_packet_is_sent(lab: Lab, policed: Daemon,
                                                                 tmp_path: Path) -> None:
    routed = [h["ip"] for h in lab.truth["hosts"] if h["routed"]]
    targets = ["198.18.0.10", routed[0]]
    with capture(lab, tmp_path / "refused.pcap", probes_to(targets), outbound=True) as pcap, \
            policed.unix() as c:
        r = c.post("/api/v1/scans/start", json={"target": targets, "profile": "quick"})
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
        assert f"{routed[0]} is outside the allowed targets (198.18.0.0/24)" in r.json()["detail"]
        assert c.get("/api/v1/scans").json()["total"] == 0  # nothing was queued either
        time.sleep(1)  # a frame the refusal had let go would be on the wire by now
    with open(pcap, "rb") as f:
        assert list(dpkt.pcap.Reader(f)) == []


def test_excluded_addresses_are_skipped_and_counted(lab: Lab, policed: Daemon) -> None:
    with policed.unix() as c:
        started = c.post("/api/v1/scans/start", json={"target": "198.18.0.0/27", "profile": "quick"})
        assert started.status_code == 202 and started.json()["excluded_addresses"] == 8
        assert wait_for(c, started.json()["id"])["status"] == "completed"
        result = c.get(f"/api/v1/scans/{started.json()['id']}/result").json()
    found = {d["ip"] for d in result["devices"]}
    skipped = {f"198.18.0.{i}" for i in range(8, 16)}
    assert not found & skipped
    assert found >= {h["ip"] for h in lab.truth["hosts"] if not h["routed"] and h["ip"] not in skipped
                     and int(h["ip"].rsplit(".", 1)[1]) < 32}
