"""`netscand`: the admin command line. Each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import sys

from netscand import __version__
from netscand.cli import cve, doctor, scan, serve, token
from netscand.lab import cli as lab


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netscand", description="Network discovery and port-scanning daemon.")
    p.add_argument("--version", action="version", version=f"netscand {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    scan.register(sub)
    serve.register(sub)
    token.register(sub)
    doctor.register(sub)
    cve.register(sub)
    lab.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("netscand: interrupted", file=sys.stderr)
        return 130
