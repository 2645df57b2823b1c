"""`netscand scan`: a one-shot scan in the foreground, without the daemon (like nmap).

The process becomes the supervisor: it forks the engine workers and one control child that runs
the scan, shows progress on a terminal and prints the result; the supervisor exits with the
control child's status.
"""

from __future__ import annotations

import argparse
import asyncio
import select
import socket
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import orjson
import structlog

from netscand import config
from netscand.engine import worker
from netscand.engine.guard import PlanGuard
from netscand.engine.shm import Shared
from netscand.scan.dispatch import Dispatcher
from netscand.profiling.services import Detector
from netscand.scan.identify import identify
from netscand.scan.policy import Policy, PolicyError
from netscand.scan.ports import PortSpecError
from netscand.scan.profiles import (
    ONE_SHOT_PROFILE,
    PROFILES,
    ScanRequest,
    discovery,
    resolve,
    taking,
)
from netscand.scan.result import document
from netscand.scan.runner import ScanRun, ScanSpec
from netscand.scan.targets import TargetError, parse_targets
from netscand.supervisor import ChildSpec, Supervisor

EXIT_USAGE = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help="run one scan in the foreground and print its result")
    p.add_argument("target", help="address, CIDR, range a-b, hostname, or a comma-separated list")
    p.add_argument("--profile", choices=list(PROFILES), default=None,
                   help="; ".join(f"{p.name}: {p.summary}" for p in PROFILES.values())
                   + f" (default {ONE_SHOT_PROFILE}, or {taking('ports').name} with --ports)")
    p.add_argument("--ports", help=f"port list, e.g. 22,80,1000-2000 or - for all (implies {taking('ports').name})")
    p.add_argument("--profiling", action="store_true",
                   help=f"with --profile {taking('enable_profiling').name}: identify devices and services")
    p.add_argument("--rate", type=float, help="probes per second in total (default from config)")
    p.add_argument("--retries", type=int, help="resends of an unanswered probe (default from config)")
    p.add_argument("--timeout-ms", type=int, help="fixed per-probe reply timeout (default: adaptive)")
    p.add_argument("--skip-discovery", "-Pn", action="store_true",
                   help="probe every target, not only hosts that answer discovery (ARP on-link; "
                        "ICMP echo, TCP SYN and ACK pings behind a router)")
    p.add_argument("--workers", type=int, help="engine worker processes (default: one per core)")
    p.add_argument("--config", type=Path, help="configuration file")
    p.add_argument("--json", action="store_true", help="print the result document as JSON")
    p.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"netscand: {message}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config.load(args.config)
        targets = parse_targets(args.target)
        profile = PROFILES[args.profile or (taking("ports").name if args.ports else ONE_SHOT_PROFILE)]
        if "ports" in profile.requires and not args.ports:
            return _fail(f"--profile {profile.name} needs --ports")
        for flag, field, given in (("--ports", "ports", args.ports),
                                   ("--profiling", "enable_profiling", args.profiling)):
            if given and field not in profile.accepts:
                return _fail(f"{flag} goes with --profile {taking(field).name}")
        e = cfg.engine
        policy = Policy.from_config(cfg.policy)
        targets, skipped = policy.apply(targets)
        policy.check_rate(args.rate)
        request = ScanRequest(args.target, profile.name, ports=args.ports.split(",") if args.ports else None,
                              timeout_ms=args.timeout_ms, retries=args.retries, skip_discovery=args.skip_discovery,
                              enable_profiling=args.profiling)
        spec = resolve(request, targets, args.rate or min(e.rate, policy.max_rate), e.retries,
                       discovery(e.ping_icmp, e.ping_syn_ports, e.ping_ack_ports))
    except (config.ConfigError, TargetError, PortSpecError, PolicyError) as exc:
        return _fail(str(exc))
    for name, value, low in (("--rate", args.rate, 1), ("--retries", args.retries, 0),
                             ("--workers", args.workers, 1), ("--timeout-ms", args.timeout_ms, 1)):
        if value is not None and value < low:
            return _fail(f"{name} must be at least {low}")
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except PermissionError:
        print("netscand: sending raw packets needs root or CAP_NET_RAW", file=sys.stderr)
        return 1
    workers = args.workers or cfg.workers
    shared = Shared(workers)
    if skipped:
        print(f"netscand: skipping {skipped} addresses listed in policy.excluded_targets", file=sys.stderr)
    meta = {"target": args.target, "profile": profile.name}
    guard = PlanGuard.of(cfg.policy)
    # What the workers log (frames they drop, plans they refuse) goes to stderr: stdout is the result's.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

    def reload() -> PlanGuard:
        return PlanGuard.of(config.load(args.config).policy)

    specs = [
        ChildSpec("worker", lambda i: worker.main(shared, i, guard, reload), count=workers,
                  heartbeat=lambda i: shared.worker_row(i).heartbeat, ready=shared.worker_ready),
        ChildSpec("control", lambda i: _control(shared, spec, meta, args.json), primary=True),
    ]
    return Supervisor(specs).run()


def _control(shared: Shared, spec: ScanSpec, meta: dict, as_json: bool) -> None:
    started = datetime.now(timezone.utc)
    dispatcher = Dispatcher(shared)
    scan = ScanRun(spec, dispatcher)
    progress = _Progress(shared) if sys.stderr.isatty() else None
    scan.step()
    while not scan.done:
        select.select(dispatcher.fds(), [], [], 0.2)
        dispatcher.poll()
        scan.step()
        if progress:
            progress.show(scan)
    if progress:
        progress.clear()
    if scan.failure:
        print(f"netscand: the scan failed: {scan.failure}", file=sys.stderr)
        raise SystemExit(1)
    for error in scan.errors:
        print(f"netscand: {error}", file=sys.stderr)
    if spec.profiling and scan.result.up_hosts:
        if progress:
            print("identifying devices...", end="\r", file=sys.stderr, flush=True)
        asyncio.run(identify(scan.result.up_hosts, Detector(), spec.detect_services, spec.host_timeout_s))
    finished = datetime.now(timezone.utc)
    doc = document(str(uuid.uuid4()), "completed", scan.result.devices(spec.profiling),
                   (finished - started).total_seconds(), **meta, started_at=_iso(started),
                   finished_at=_iso(finished))
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        _print_table(doc)
    raise SystemExit(1 if scan.errors and not doc["devices"] else 0)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Progress:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.started = time.monotonic()
        self.next = 0.0

    def show(self, scan: ScanRun) -> None:
        now = time.monotonic()
        if now < self.next:
            return
        self.next = now + 0.25
        done, planned = scan.progress()
        sent = sum(self.shared.worker_row(w).sent for w in range(self.shared.workers))
        elapsed = max(now - self.started, 1e-3)
        hosts = len(scan.result.up_hosts)
        pct = 100 * done // planned if planned else 0
        sys.stderr.write(f"\r{pct:3d}%  {sent:,} probes  {sent / elapsed:,.0f}/s  {hosts} hosts up  ")
        sys.stderr.flush()

    def clear(self) -> None:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def _print_table(doc: dict) -> None:
    out = sys.stdout
    out.write(f"{doc['devices_found']} hosts up, {doc['open_ports_total']} open ports, "
              f"{doc['duration_seconds']} s\n")
    for d in doc["devices"]:
        about = [d["hostname"], d["mac"], d["vendor"], d["os_guess"] and f"OS: {d['os_guess']}"]
        out.write(f"\n{d['ip']}  " + "  ".join(a for a in about if a) + "\n")
        for p in d["ports"]:
            what = " ".join(filter(None, (p["service"], p.get("product"), p.get("version"))))
            out.write(f"  {p['port']:>5}/{p['protocol']:<4} {p['state']:<9} {what}\n")
        for state, count in d.get("not_shown", {}).items():
            tarpit = " (a tarpit: it answers every port)" if state == "open" and d.get("tarpit") else ""
            out.write(f"  not shown: {count} {state} ports{tarpit}\n")
