"""`netscand serve`: run the daemon in the foreground (systemd runs it this way too)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from netscand import config, daemon
from netscand.listeners import ListenError
from netscand.scan.ports import PortSpecError
from netscand.store import StoreError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the daemon: REST API on a Unix socket and HTTPS")
    add_config_flags(p)
    p.add_argument("--socket", help="Unix socket path")
    p.add_argument("--listen", help="HTTPS listener HOST:PORT ('' to disable)")
    p.add_argument("--workers", type=int, help="engine worker processes (default: one per core)")
    p.set_defaults(func=run)


def add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="configuration file (default: built-in settings)")
    p.add_argument("--state-dir", help="state directory (database, generated certificate)")


def load(args: argparse.Namespace) -> config.Config:
    """The config file (if any) with the command line's flags over it."""
    cfg = config.load(args.config)
    cfg = config.override(cfg, "daemon", state_dir=args.state_dir,
                          socket=getattr(args, "socket", None), listen=getattr(args, "listen", None))
    cfg = config.override(cfg, "engine", workers=getattr(args, "workers", None))
    config.check(cfg, "command line")
    return cfg


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load(args)
        return daemon.serve(cfg)
    except (config.ConfigError, ListenError, StoreError, PortSpecError) as exc:
        print(f"netscand: {exc}", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(f"netscand: permission denied: {exc.filename}", file=sys.stderr)
        return 1
