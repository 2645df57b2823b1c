"""`netscanctl`: the client of the daemon's REST API (the daemon arrives with the API issue)."""

from __future__ import annotations

import argparse

from netscand import __version__


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="netscanctl", description="Client for the netscand REST API.")
    p.add_argument("--version", action="version", version=f"netscanctl {__version__}")
    p.parse_args(argv)
    p.print_help()
    return 0
