"""`netscand cve import|sync|status`: load CVE data (NVD CVE JSON 2.0, the Debian Security
Tracker's JSON) into the CVE database scans are matched against, and say what it holds.

The database is the state directory's cve.db unless --db names another. Run as root on that
default, the work is done as the daemon's user, whose file it is (as `netscand token` does): the
files to import are opened first, so root's own files can be read.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

import msgspec

from netscand import config, privileges
from netscand.cli.serve import add_config_flags, load
from netscand.vuln import store as cve_store
from netscand.vuln.errors import CveStoreError, ImportRefused, SyncError
from netscand.vuln.records import CveStatus
from netscand.vuln.store import CveStore, ImportReport

API_KEY_ENV = "NETSCAND_NVD_API_KEY"


class UsageError(ValueError):
    pass


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cve", help="load CVE data (NVD, Debian Security Tracker) and show what is loaded")
    csub = p.add_subparsers(dest="cve_command", required=True)
    imp = csub.add_parser("import", help="load NVD CVE JSON 2.0 files (feeds or records, plain or gzip)")
    imp.add_argument("files", nargs="*", metavar="FILE", help="NVD JSON 2.0 files, imported in one transaction")
    imp.add_argument("--debian-tracker", metavar="FILE", help="the Debian Security Tracker's JSON")
    sync = csub.add_parser("sync", help="fetch the NVD feeds and the Debian tracker, then import them")
    sync.add_argument("--api-key", default=os.environ.get(API_KEY_ENV) or None,
                      help=f"NVD API key (default: ${API_KEY_ENV}, which keeps it out of `ps`): once the feed "
                           "files are imported, sync asks the NVD's REST API for only the records changed since; "
                           "the key is sent to that API alone, never to the feeds or the Debian tracker")
    sync.add_argument("--source", metavar="URL", help="base URL of the NVD JSON 2.0 feed files (default: [cve] feed_url)")
    sync.add_argument("--api", metavar="URL", help="the NVD CVE API 2.0 (default: [cve] api_url)")
    sync.add_argument("--tracker", metavar="URL", help="the Debian tracker's JSON (default: [cve] tracker_url)")
    status = csub.add_parser("status", help="sources, record counts, newest record, age")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    for q in (imp, sync, status):
        add_config_flags(q)
        q.add_argument("--db", type=Path, help="CVE database file (default: <state dir>/cve.db)")
        q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load(args)
        with ExitStack() as files:
            inputs = [files.enter_context(_opened(name)) for name in _inputs(args)]
            store = _open_store(args, cfg)
            if args.cve_command == "import":
                _import(store, inputs, args.debian_tracker is not None)
            elif args.cve_command == "sync":
                _sync(store, args, cfg)
            else:
                _status(store.status(), store.path, args.json)
        return 0
    except (config.ConfigError, privileges.PrivilegeError, UsageError, CveStoreError, ImportRefused,
            SyncError) as exc:
        print(f"netscand: cve {args.cve_command}: {exc}", file=sys.stderr)
        return 1


def _inputs(args: argparse.Namespace) -> list[str]:
    if args.cve_command != "import":
        return []
    if not args.files and args.debian_tracker is None:
        raise UsageError("name NVD JSON files to import, or --debian-tracker FILE")
    return [*args.files, *([args.debian_tracker] if args.debian_tracker is not None else [])]


def _opened(name: str) -> BinaryIO:
    try:
        return open(name, "rb")
    except OSError as exc:
        raise ImportRefused(name, None, f"cannot read: {exc.strerror or exc}") from None


def _open_store(args: argparse.Namespace, cfg: config.Config) -> CveStore:
    path = args.db if args.db is not None else _default_path(cfg)
    if args.cve_command == "status" and not path.exists():  # status reads: a typo makes no file
        raise UsageError(f"no CVE database at {path}: run `netscand cve sync`, or `netscand cve import FILE...`")
    return CveStore(path)


def _default_path(cfg: config.Config) -> Path:
    """The state directory's cve.db, worked on as the daemon's user when run as root (the
    --db file is the caller's own, worked on as the caller)."""
    # The daemon's graph, imported when its state directory is used: never by `netscand --help`
    # or the other subcommands (start-up cost).
    from netscand import daemon

    account = privileges.account(cfg.daemon.user)  # None unless root
    state = daemon.state_directory(cfg, account)
    if account is not None:
        privileges.switch(account)
        privileges.drop_all()  # CVE data needs no capability
    return state / cve_store.DB_NAME


def _import(store: CveStore, inputs: list[BinaryIO], tracker: bool) -> None:
    feeds, tracker_file = (inputs[:-1], inputs[-1]) if tracker else (inputs, None)
    if feeds:
        _report(store.import_nvd(feeds))
    if tracker_file is not None:
        _report(store.import_tracker(tracker_file))


def _sync(store: CveStore, args: argparse.Namespace, cfg: config.Config) -> None:
    # Its HTTP client is `sync`'s alone (start-up cost).
    from netscand.vuln import sync as cve_sync

    source = args.source or cfg.cve.feed_url
    tracker = args.tracker or cfg.cve.tracker_url
    api = args.api or cfg.cve.api_url
    for report in cve_sync.sync(store, source, tracker, api_key=args.api_key, api_url=api):
        _report(report)


def _report(r: ImportReport) -> None:
    if r.source == "nvd":
        print(f"nvd: {r.records} records read from {r.files} file{'s' * (r.files != 1)}, "
              f"{r.written} new or updated; {r.total} records in all")
    else:
        print(f"{r.source}: {r.records} package/CVE entries (replacing the previous ones)")


def _status(status: CveStatus, path: Path, as_json: bool) -> None:
    if as_json:
        print(msgspec.json.encode(status).decode())
        return
    if not status.sources:
        print(f"no CVE data in {path}: run `netscand cve sync`, or `netscand cve import FILE...`")
        return
    print(f"CVE data in {path}, updated {status.updated_at} ({_age(status.age_seconds)} ago)")
    for s in status.sources:
        print(f"{s.name:<15} {s.records:>8} records  newest {s.newest}  imported {s.imported_at}")
    if not status.loaded:
        print("no NVD record is loaded: no CVE can be matched")


def _age(seconds: float | None) -> str:
    minutes = max(0, int(seconds or 0)) // 60
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h" if minutes < 48 * 60 else f"{minutes // 1440} days"
