"""A scan's coverage (scan/coverage.py): the loss estimate from the share of answered probes
that needed a retry, the per-host confidence, and how a ScanResult gathers the engine's counts
(each shard's R_DONE, each host's R_COVER, a shard reported twice counted once)."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from netscand.api.openapi import document as openapi_document
from netscand.engine import coverage as engine_coverage
from netscand.engine.coverage import Counts
from netscand.engine.shm import R_COVER, R_DONE, R_TALLY, Result
from netscand.scan import coverage
from netscand.scan.persist import device_row
from netscand.scan.result import ScanResult, document
from netscand.store import Store

IP = 0xC6120005


def record(kind: int, counts: Counts, shard: int = 0, ip: int = 0, state: int = 0, a: int = 0) -> Result:
    return Result(kind, state, 0, 0, 1, shard, ip, 0, 0, a, 0, b"\0" * 6, 0, engine_coverage.pack(counts))


@given(st.floats(0, 0.95), st.integers(1, 6))
def test_the_estimate_inverts_the_share_a_loss_gives(p: float, retries: int) -> None:
    assert coverage.loss_from_share(coverage.share_retried(p, retries), retries) == pytest.approx(p, abs=1e-6)


@given(st.builds(Counts, *(st.integers(0, 2**32 - 1) for _ in range(4))), st.integers(0, 255))
def test_any_counts_give_a_loss_and_confidence_within_bounds(counts: Counts, retries: int) -> None:
    """Counts are the engine's: the estimate is total over whatever they say (recovered past
    answered included)."""
    loss = coverage.estimated_loss(counts, retries)
    assert loss is None or 0 <= loss <= 1
    doc = coverage.host_document(counts, loss, retries)
    assert 0 <= doc["confidence"] <= 1


def test_no_evidence_is_no_estimate() -> None:
    assert coverage.estimated_loss(Counts(100, 0, 100, 0), 3) is None  # nothing answered
    assert coverage.estimated_loss(Counts(100, 90, 0, 0), 0) is None  # no retries: nothing to recover
    assert coverage.estimated_loss(Counts(100, 90, 10, 0), 3) == 0.0


def test_a_clean_host_is_trusted_and_a_silent_one_less() -> None:
    clean = coverage.host_document(Counts(1024, 1024, 0, 0), 0.0, 3)
    assert clean["confidence"] == 1.0
    silent = coverage.host_document(Counts(4096, 0, 3072, 0), 0.0, 3)
    assert silent["confidence"] == pytest.approx(1 - 0.5**4)
    lossy = coverage.host_document(Counts(1100, 1000, 200, 100), 0.1, 3)  # 10 % recovered
    assert lossy["confidence"] == pytest.approx(1 - 0.1**4, abs=1e-3)


def test_a_hosts_few_answers_lean_on_the_scans_loss() -> None:
    """Two answers, one after a retry, are not a host with 50 % loss on a clean scan."""
    few = coverage.host_loss(Counts(4, 2, 1, 1), 0.0, 3)
    assert 0.03 < few < 0.06  # 1 recovered of 2 + 20 clean answers' worth


def test_the_result_gathers_shards_and_hosts_once_each() -> None:
    result = ScanResult()
    result.probed((IP,), 1000, "tcp")  # not known yet: it learns its ports when it answers
    result.add(record(R_TALLY, Counts(), shard=0, ip=IP, a=400), 1000, "tcp")
    for _ in range(2):  # the shard again, after a worker restart
        result.add(record(R_COVER, Counts(520, 500, 20, 10), shard=0, ip=IP), 1000, "tcp")
    for shard in (0, 1):
        result.shard_done(record(R_DONE, Counts(1100, 1000, 100, 50), shard=shard, state=3))
    assert result.counts == Counts(2200, 2000, 200, 100) and result.retries == 3
    doc = result.coverage()
    assert doc["probes_sent"] == 2200 and doc["probes_recovered"] == 100
    assert doc["estimated_loss"] == pytest.approx(0.05, abs=1e-3)
    # The host answered in shard 0 only: its other 500 ports went 1 + 3 times each.
    device = result.device(result.hosts[IP])
    assert device["coverage"]["probes"] == 520 + 500 * 4
    assert device["coverage"]["answered"] == 500 and device["coverage"]["recovered"] == 10
    jsonschema.validate(device, {**openapi_document(), "$ref": "#/components/schemas/Device"})
    page = document("0" * 8 + "-0000-4000-8000-" + "0" * 12, "completed", [device], 1.0, target="198.18.0.0/24",
                    profile="quick", site_id=None, started_at=None, finished_at=None, coverage=doc)
    jsonschema.validate(page | {"page": 1, "per_page": 100}, {**openapi_document(), "$ref": "#/components/schemas/ScanResult"})


def test_a_devices_coverage_is_stored_with_its_final_fields(tmp_path: Path) -> None:
    """Only once the host's counts are final: a flush while the scan runs leaves it out."""
    result = ScanResult()
    result.add(record(R_TALLY, Counts(), ip=IP, a=1000), 1000, "tcp")
    result.add(record(R_COVER, Counts(1030, 1000, 30, 20), ip=IP), 1000, "tcp")
    result.shard_done(record(R_DONE, Counts(1030, 1000, 30, 20), state=3))
    h = result.hosts[IP]
    store = Store(tmp_path / "netscand.db")
    try:
        scan = store.create_scan({"id": "00000000-0000-4000-8000-000000000001", "target": "198.18.0.5",
                                  "profile": "quick", "created_at": "2026-03-15T10:00:00Z"})
        store.put_devices(scan["id"], [device_row(result, h, profiling=False, final=False)])
        [early] = store.result(scan["id"])
        store.put_devices(scan["id"], [device_row(result, h, profiling=False, final=True)])
        [stored] = store.result(scan["id"])
    finally:
        store.close()
    assert "coverage" not in early
    assert stored["coverage"] == result.host_coverage(h)
    assert stored["coverage"]["recovered"] == 20
