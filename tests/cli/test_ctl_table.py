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
