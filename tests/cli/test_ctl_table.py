"""netscanctl's result table: a tarpit's open ports are said to be the tarpit's, not services."""

from __future__ import annotations

from rich.console import Console

from netscand.cli.ctl import _print_result


def test_a_tarpit_is_named_as_one_in_the_table() -> None:
    console = Console(record=True, width=200)
    _print_result(console, {
        "status": "completed", "devices_found": 2, "open_ports_total": 1, "duration_seconds": 3,
        "devices": [
            {"ip": "198.18.0.10", "ports": [{"port": 22, "protocol": "tcp", "state": "open", "service": "SSH"}],
             "not_shown": {"closed": 999}},
            {"ip": "198.18.0.220", "ports": [], "tarpit": True, "not_shown": {"open": 1000}},
        ]})
    rows = [" ".join(line.split()) for line in console.export_text().splitlines()]
    assert "tcp 1000 open tarpit: answers every port" in rows
    assert "tcp 999 closed not shown" in rows


def test_coverage_is_a_line_under_the_summary_and_doubtful_devices_are_named() -> None:
    console = Console(record=True, width=200)
    _print_result(console, {
        "status": "running", "devices_found": 2, "open_ports_total": 0, "duration_seconds": 3,
        "coverage": {"probes_sent": 9132, "probes_answered": 8198, "probes_retried": 927,
                     "probes_recovered": 830, "retries": 3, "estimated_loss": 0.1013},
        "devices": [
            {"ip": "198.18.0.10", "ports": [], "coverage": {"probes": 1134, "answered": 1023, "recovered": 99,
                                                          "confidence": 0.9999}},
            {"ip": "198.18.0.11", "ports": [], "coverage": {"probes": 4096, "answered": 0, "recovered": 0,
                                                          "confidence": 0.9375}},
        ]})
    lines = console.export_text().splitlines()
    assert lines[1] == "9,132 probes sent, 8,198 answered (830 after a retry), est. loss 10.1 %"
    doubtful = [line for line in lines if "confidence" in line]
    assert doubtful == ["198.18.0.11: confidence 0.938 that its silent ports are filtered, not lost "
                        "(0 of 4,096 probes answered, 0 after a retry)"]
