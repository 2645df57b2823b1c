"""scan/resume.py without an engine: where a shard goes on after a restart (first_pass), and a
spec kept as JSON comes back the same."""

from __future__ import annotations

from netscand.scan.resume import first_pass, spec_from_json, spec_json
from netscand.scan.spec import Discovery, Pacing, ScanSpec
from netscand.scan.targets import Targets
from netscand.store.checkpoints import ShardRow

RETRIES = 3


def row(granted: int, attempt: int, pos: int, base: bool) -> ShardRow:
    return ShardRow(1, 0, 0, False, granted, attempt, pos, base)


def test_a_shard_goes_on_from_its_position_in_a_new_pass_when_a_retry_is_left_for_what_came_before() -> None:
    assert first_pass(row(0, 0, 8192, True), RETRIES) == (1, 8192)
    assert first_pass(row(1, 1, 100, True), RETRIES) == (2, 100)


def test_the_pass_is_resent_whole_when_its_position_is_unknown_or_no_retry_would_ask_the_rest_again() -> None:
    assert first_pass(row(0, -1, 0, False), RETRIES) == (1, 0)  # handed out, no position told yet
    assert first_pass(row(1, 0, 8192, True), RETRIES) == (2, 0)  # its retry pass was granted since
    assert first_pass(row(1, 1, 50, False), RETRIES) == (2, 0)  # a retry pass: its order died with it
    assert first_pass(row(2, 2, 8192, True), RETRIES) == (3, 0)  # the last pass: nothing after it


def test_a_shard_whose_last_pass_was_granted_has_none_left() -> None:
    assert first_pass(row(RETRIES, RETRIES, 10, True), RETRIES) is None
    assert first_pass(row(0, 0, 10, True), 0) is None


def test_a_spec_comes_back_from_its_json() -> None:
    specs = [ScanSpec(Targets(((1, 5), (9, 9))), (22, 80), 1000.0, 3, pacing=Pacing(1, 2, 3, 4)),
             ScanSpec(Targets(((1, 5),)), tuple(range(1, 65536)), 1e5, 0, timeout_ms=300, host_timeout_s=2.5,
                      discovery=None, udp_ports=(53, 161), profiling=True, detect_services=True, cve_match=True),
             ScanSpec(Targets(((7, 7),)), (443,), 10.0, 1, discovery=Discovery(False, (), (80,)), max_hosts=4)]
    for spec in specs:
        assert spec_from_json(spec_json(spec)) == spec
