"""`netscand serve`: run the daemon in the foreground (systemd runs it this way too); and
`netscand reload`, systemd's ExecReload: SIGHUP to the daemon, then wait until it has reloaded.

The daemon's composition root (daemon.py, and through it the engine, the API and the store) is
imported by the command that runs, not by this module: registering the arguments is all that
`netscand --help` and the other subcommands need of it (start-up cost).
"""

from __future__ import annotations

import argparse
import os
import pwd
import signal
import sys
import time
from pathlib import Path

from netscand import config
from netscand.listeners import ListenError
from netscand.notify import Receipt, start_time
from netscand.privileges import PrivilegeError
from netscand.scan.ports import PortSpecError

RELOAD_POLL = 0.05


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the daemon: REST API on a Unix socket and HTTPS")
    add_config_flags(p)
    p.add_argument("--socket", help="Unix socket path")
    p.add_argument("--listen", help="HTTPS listener HOST:PORT ('' to disable)")
    p.add_argument("--workers", type=int, help="engine worker processes (default: one per core)")
    p.set_defaults(func=run)
    r = sub.add_parser("reload", help="make the running daemon re-read its config and TLS certificate, "
                                      "and wait until it has")
    add_config_flags(r)
    r.add_argument("--pid", type=int, help="the daemon's pid (default: the one its state directory names)")
    r.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    r.set_defaults(func=reload)


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
    # The daemon's whole graph (and SQLite), for this command alone.
    from netscand import control, daemon
    from netscand.store import StoreError

    try:
        cfg = load(args)
        return daemon.serve(cfg, lambda: load(args))
    except (config.ConfigError, ListenError, StoreError, PortSpecError, PrivilegeError, control.SettingsError) as exc:
        print(f"netscand: {exc}", file=sys.stderr)
        return 1


def reload(args: argparse.Namespace) -> int:
    """SIGHUP alone returns at once; waiting for the daemon's receipt makes `systemctl reload`
    return when the new settings are in force, and fail when they were refused."""
    try:
        cfg = load(args)
    except config.ConfigError as exc:
        print(f"netscand: {exc}", file=sys.stderr)
        return 1
    from netscand import daemon  # the daemon's whole graph, for this command alone

    path = daemon.receipt_path(cfg)
    before = Receipt.read(path)
    pid = args.pid  # systemd's $MAINPID: trusted as given
    if pid is None:
        if before is None or start_time(before.pid) != before.started:
            print(f"netscand: no daemon is running with {path.parent}", file=sys.stderr)
            return 1
        # The receipt is the daemon user's to write: root checks what it names before signalling.
        user = cfg.daemon.user if os.geteuid() == 0 else None
        if not before.names_daemon(_uid(user) if user else None):
            print(f"netscand: {path} names pid {before.pid}, which is not a netscand daemon"
                  f"{f' run by {user}' if user else ''}: not signalling it (--pid names the daemon)",
                  file=sys.stderr)
            return 1
        pid = before.pid
    asked = before.requested if before and before.pid == pid else 0
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        print(f"netscand: cannot signal pid {pid}: {exc.strerror}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        time.sleep(RELOAD_POLL)
        receipt = Receipt.read(path)
        if receipt and receipt.pid == pid and receipt.done > asked:
            if receipt.error:
                print(f"netscand: reload failed, the daemon keeps its settings: {receipt.error}", file=sys.stderr)
                return 1
            return 0
        if start_time(pid) is None:
            print(f"netscand: the daemon (pid {pid}) exited while reloading", file=sys.stderr)
            return 1
    print(f"netscand: the daemon (pid {pid}) did not finish reloading within {args.timeout:g} s", file=sys.stderr)
    return 1


def _uid(user: str) -> int:
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return -1  # no such user runs anything
