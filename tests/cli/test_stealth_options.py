"""`netscand scan`'s pacing options (--stealth-level, --host-gap-ms, --jitter-ms, --source-ports):
a fault is one clear line and exit 2, nothing sent (each run in a throwaway namespace, loopback
only, as test_scan_errors.py's). netscanctl start's are tested in tests/api/test_stealth_validation.py,
beside an API."""

from __future__ import annotations

import pytest

from tests.cli.test_scan_errors import assert_one_line, run_scan

T = "198.18.0.1"


@pytest.mark.parametrize("argv, words", [
    ([T, "--profile", "quick", "--stealth-level", "quiet"], "--stealth-level goes with --profile stealth"),
    ([T, "--ports", "22", "--stealth-level", "quiet"], "--stealth-level goes with --profile stealth"),
    ([T, "--host-gap-ms", "3000"], "--host-gap-ms goes with --profile stealth or custom"),  # quick by default
    ([T, "--profile", "stealth", "--host-gap-ms", "0"], "--host-gap-ms must be 1-3600000"),
    ([T, "--profile", "stealth", "--jitter-ms", "-1"], "--jitter-ms must be 0-3600000"),
    # Past the API's bounds a plan cannot carry them: refused as the API does, never a traceback.
    ([T, "--profile", "stealth", "--host-gap-ms", "3600001"], "--host-gap-ms must be 1-3600000"),
    ([T, "--ports", "22", "--host-gap-ms", "5000", "--jitter-ms", "99999999999"], "--jitter-ms must be 0-3600000"),
    ([T, "--stealth-level", "quiet", "--source-ports", "1000-2000"], "--source-ports: not a range 'lo-hi'"),
    ([T, "--stealth-level", "quiet", "--source-ports", "60000-62000"], "within 1024-61439"),
    ([T, "--ports", "22", "--jitter-ms", "100"], "--jitter-ms: jitter_ms needs per-host pacing: give host_gap_ms"),
    ([T, "--ports", "22", "--source-ports", "40000-40001"], "--source-ports: source_ports needs per-host pacing"),
])
def test_bad_pacing_options_are_one_line_and_exit_2(netns: str, argv: list[str], words: str) -> None:
    assert_one_line(run_scan(netns, *argv), words)
