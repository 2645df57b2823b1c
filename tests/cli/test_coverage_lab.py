"""A one-shot scan's coverage in the lab (scan/coverage.py): a clean lab reads no loss and full
confidence; with the lab's random loss on the scanner's link (both ways), the scan sends more
than it planned, recovers answers by retries, and estimates a loss near the lab's round trip."""

from __future__ import annotations

import pytest

from netscand.lab import Lab
from netscand.lab.harness import all_hosts
from tests.cli.test_scan_lab import scan

pytestmark = pytest.mark.lab

PORTS = 1024


def test_a_clean_scan_reads_no_loss_and_full_confidence(lab: Lab) -> None:
    doc = scan(lab, ",".join(all_hosts(lab)), "--ports", f"1-{PORTS}")
    cov = doc["coverage"]
    assert cov["probes_sent"] >= len(lab.truth["hosts"]) * PORTS
    assert cov["probes_answered"] > 0 and cov["retries"] >= 1
    assert cov["estimated_loss"] is not None and cov["estimated_loss"] < 0.01
    for device in doc["devices"]:
        assert device["coverage"]["probes"] >= PORTS
        assert device["coverage"]["confidence"] > 0.999, device["ip"]


def test_a_lossy_link_shows_in_retries_and_the_loss_estimate(lab_factory) -> None:
    loss_pct = 5
    with lab_factory(hosts=8, loss_pct=loss_pct) as lossy:
        doc = scan(lossy, ",".join(all_hosts(lossy)), "--ports", f"1-{PORTS}")
    cov = doc["coverage"]
    planned = len(lossy.truth["hosts"]) * PORTS
    assert cov["probes_sent"] > planned + cov["probes_recovered"]
    assert cov["probes_recovered"] > 0 and cov["probes_retried"] >= cov["probes_recovered"]
    round_trip = 1 - (1 - loss_pct / 100) ** 2  # dropped on the way out or back
    assert round_trip / 2 < cov["estimated_loss"] < round_trip * 2, cov
    recovered = [d["coverage"]["recovered"] for d in doc["devices"]]
    assert sum(recovered) > 0
    for device in doc["devices"]:  # at 3 retries a 10 % loss leaves 1e-4 of silent ports in doubt
        assert device["coverage"]["confidence"] > 0.99, device
