"""`netscand scan --udp-ports`: custom's UDP ports from the command line; bad ones are one clear
line and exit 2, nothing sent (each run in a throwaway namespace, loopback only, as
test_scan_errors.py's). Both commands' tables show UDP ports and their counts. netscanctl
start's --udp-ports is tested in tests/api/test_udp_validation.py, beside an API."""

from __future__ import annotations

import pytest
from rich.console import Console

from netscand.cli.ctl import _print_result
from netscand.cli.scan import _print_table
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


def test_netscanctl_shows_udp_ports_and_their_counts() -> None:
    console = Console(record=True, width=200)
    _print_result(console, {
        "status": "completed", "devices_found": 1, "open_ports_total": 1, "duration_seconds": 3,
        "devices": [{"ip": "198.18.0.10", "udp_icmp_limited": True,
                     "ports": [{"port": 161, "protocol": "udp", "state": "open", "service": "SNMP"}],
                     "not_shown": {"closed": 999}, "not_shown_udp": {"closed": 3, "open|filtered": 100}}]})
    rows = [" ".join(line.split()) for line in console.export_text().splitlines()]
    assert "198.18.0.10 161/udp open SNMP" in rows
    assert "tcp 999 closed not shown" in rows
    assert "udp 3 closed not shown" in rows and "udp 100 open|filtered not shown" in rows


def test_netscand_scan_prints_udp_counts_and_the_rate_limit(capsys: pytest.CaptureFixture[str]) -> None:
    _print_table({"devices_found": 1, "open_ports_total": 0, "duration_seconds": 3, "devices": [
        {"ip": "198.18.0.10", "hostname": None, "mac": None, "vendor": None, "os_guess": None, "ports": [
            {"port": 53, "protocol": "udp", "state": "open|filtered", "service": "DOMAIN"}],
         "not_shown_udp": {"closed": 30}, "udp_icmp_limited": True}]})
    out = capsys.readouterr().out.splitlines()
    assert "     53/udp  open|filtered DOMAIN" in out
    assert "  not shown: 30 closed UDP ports" in out
    assert any("rate-limited" in line for line in out)
