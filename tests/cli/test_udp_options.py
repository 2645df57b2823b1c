"""`netscand scan --udp-ports`: custom's UDP ports from the command line; bad ones are one clear
line and exit 2, nothing sent (each run in a throwaway namespace, loopback only, as
test_scan_errors.py's). netscanctl's is in tests/api/test_udp_validation.py, beside an API."""

from __future__ import annotations

import pytest

from tests.cli.test_scan_errors import assert_one_line, run_scan


@pytest.mark.parametrize("argv, words", [
    (["198.18.0.1", "--udp-ports", "53"], "--profile custom needs --ports"),  # --udp-ports implies custom
    (["198.18.0.1", "--profile", "quick", "--udp-ports", "53"], "--udp-ports goes with --profile custom"),
    (["198.18.0.1", "--ports", "22", "--udp-ports", "0"], "--udp-ports: port out of range"),
    (["198.18.0.1", "--ports", "22", "--udp-ports", "161-53"], "--udp-ports: reversed port range '161-53'"),
    (["198.18.0.1", "--ports", "80-22", "--udp-ports", "53"], "--ports: reversed port range '80-22'"),
])
def test_bad_udp_ports_are_one_line_and_exit_2(netns: str, argv: list[str], words: str) -> None:
    assert_one_line(run_scan(netns, *argv), words)
