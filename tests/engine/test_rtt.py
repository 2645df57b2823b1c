"""A plan's reply timeout from the round-trip times its replies measure."""

from __future__ import annotations

import pytest

from netscand.engine import plan as plans
from netscand.engine.clock import WRAP_S
from netscand.engine.probes import tcp_syn
from netscand.engine.rtt import RttEstimator

PLAN = plans.Plan(gen=1, kind=tcp_syn.PROBE.kind, slot=0, share=1, retries=0, key=b"k" * 16, ifindex=1,
                  src_ip=1, src_mac=b"\2" * 6, sport_base=61440, rate=100.0, timeout_init_ms=1000,
                  timeout_min_ms=100, timeout_max_ms=3000, shard_size=1, hosts=(2,), macs=(b"\0" * 6,),
                  ports=(80,))


def test_the_timeout_follows_the_samples_within_its_bounds() -> None:
    rtt = RttEstimator(PLAN)
    assert rtt.timeout() == 1.0  # no sample yet: the initial timeout
    rtt.sample(0.2)
    assert rtt.timeout() == pytest.approx(0.2 + 4 * 0.1)
    for _ in range(50):
        rtt.sample(0.001)
    assert rtt.timeout() == 0.1  # held to the minimum


def test_a_sample_past_the_longest_timeout_is_not_believed() -> None:
    """A tick read across its wrap gives ~4.09 s: believed, it would push the timeout to its max."""
    rtt = RttEstimator(PLAN)
    rtt.sample(0.05)
    rtt.sample(WRAP_S - 0.004)
    rtt.sample(3.001)
    assert (rtt.srtt, rtt.timeout()) == (0.05, pytest.approx(0.05 + 4 * 0.025))
