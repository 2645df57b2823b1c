"""`netscand scan`: a one-shot scan in the foreground, without the daemon (like nmap).

This module parses the command line and prints; oneshot.py, the one-shot scan's composition
root beside daemon.py, runs the scan. On a terminal its progress is a live bar on stderr, like
netscanctl's; elsewhere (CI logs, pipes) stderr has only what went wrong, and stdout only the
result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from netscand import config
from netscand.cli import coverage, findings
from netscand.cli.progress import progress_bar
from netscand.scan.policy import PolicyError
from netscand.scan.ports import PortSpecError, named, port_ranges, source_port_range
from netscand.scan.profiles import (
    DEFAULT_LEVEL,
    HOST_GAP_MS,
    JITTER_MS,
    LEVEL_NAMES,
    ONE_SHOT_PROFILE,
    PROFILES,
    RETRIES,
    TIMEOUT_MS,
    Profile,
    ScanRequest,
    accepting,
    contradiction,
    taking,
)
from netscand.scan.targets import TargetError, parse_targets

if TYPE_CHECKING:
    from netscand import oneshot

EXIT_USAGE = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help="run one scan in the foreground and print its result")
    p.add_argument("target", help="address, CIDR, range a-b, hostname, or a comma-separated list")
    p.add_argument("--profile", choices=list(PROFILES), default=None,
                   help="; ".join(f"{p.name}: {p.summary}" for p in PROFILES.values())
                   + f" (default {ONE_SHOT_PROFILE}, {taking('ports').name} with --ports or --udp-ports, "
                     f"{taking('stealth_level').name} with --stealth-level)")
    p.add_argument("--ports", help=f"port list, e.g. 22,80,1000-2000 or - for all (implies {taking('ports').name})")
    p.add_argument("--udp-ports", help=f"UDP ports to scan too, written as --ports is (implies "
                                       f"{taking('udp_ports').name}, which needs --ports)")
    p.add_argument("--profiling", action="store_true",
                   help=f"with --profile {taking('enable_profiling').name}: identify devices and services")
    p.add_argument("--cve-match", action="store_true",
                   help=f"with --profile {taking('enable_cve_match').name}: match the services found against the "
                        "CVE data (netscand cve import/sync); implies --profiling, whose service detection "
                        "finds the CPEs matched")
    p.add_argument("--stealth-level", choices=LEVEL_NAMES,
                   help=f"{taking('stealth_level').name}'s pace (default {DEFAULT_LEVEL}; implies --profile "
                        f"{taking('stealth_level').name})")
    paced = " or ".join(accepting("host_gap_ms"))
    p.add_argument("--host-gap-ms", type=int,
                   help=f"with --profile {paced}: each host gets one probe per this many ms at most")
    p.add_argument("--jitter-ms", type=int, help="with per-host pacing: a random 0 to this many ms more per wait")
    p.add_argument("--source-ports", help="with per-host pacing: the probes' source port range LO-HI "
                                          "(default the kernel's ephemeral range)")
    p.add_argument("--rate", type=float, help="probes per second in total, pinned (default: the engine finds the "
                                            "rate the path carries, up to engine.rate)")
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


def _out_of_range(args: argparse.Namespace) -> str | None:
    for name, value, low in (("--rate", args.rate, 1), ("--workers", args.workers, 1)):
        if value is not None and value < low:
            return f"{name} must be at least {low}"
    # Bounded as the API bounds them: past them a plan cannot carry the value.
    for name, value, (low, high) in (("--retries", args.retries, RETRIES), ("--timeout-ms", args.timeout_ms, TIMEOUT_MS),
                                     ("--host-gap-ms", args.host_gap_ms, HOST_GAP_MS),
                                     ("--jitter-ms", args.jitter_ms, JITTER_MS)):
        if value is not None and not low <= value <= high:
            return f"{name} must be {low}-{high}"
    return None


def _profile(args: argparse.Namespace) -> Profile:
    """--profile, else the one --ports or --stealth-level implies, else the one-shot default."""
    if args.profile:
        return PROFILES[args.profile]
    if args.ports or args.udp_ports:
        return taking("ports")
    return taking("stealth_level") if args.stealth_level else PROFILES[ONE_SHOT_PROFILE]


def _refused(args: argparse.Namespace, profile: Profile) -> str | None:
    """Why an option the profile does not take was given, if one was."""
    for flag, field, given in (("--ports", "ports", args.ports), ("--udp-ports", "udp_ports", args.udp_ports),
                               ("--profiling", "enable_profiling", args.profiling or None),
                               ("--cve-match", "enable_cve_match", args.cve_match or None),
                               ("--stealth-level", "stealth_level", args.stealth_level),
                               ("--host-gap-ms", "host_gap_ms", args.host_gap_ms),
                               ("--jitter-ms", "jitter_ms", args.jitter_ms),
                               ("--source-ports", "source_ports", args.source_ports)):
        if given is not None and field not in profile.accepts:
            return f"{flag} goes with --profile {' or '.join(accepting(field))}"
    return None


def run(args: argparse.Namespace) -> int:
    # The one-shot root (the engine, the scan's stages) is imported when a scan runs: `netscand
    # --help` and the other subcommands register this one's arguments without it (start-up cost).
    from netscand import oneshot

    if bad := _out_of_range(args):
        return _fail(bad)
    try:
        cfg = config.load(args.config)
        targets = parse_targets(args.target)
        profile = _profile(args)
        if "ports" in profile.requires and not args.ports:
            return _fail(f"--profile {profile.name} needs --ports")
        for flag, text in (("--ports", args.ports), ("--udp-ports", args.udp_ports)):
            if text:
                named(flag, port_ranges, text.split(","))
        if args.source_ports:
            named("--source-ports", source_port_range, args.source_ports)
        if refused := _refused(args, profile):
            return _fail(refused)
        request = ScanRequest(args.target, profile.name, ports=args.ports.split(",") if args.ports else None,
                              udp_ports=args.udp_ports.split(",") if args.udp_ports else None,
                              timeout_ms=args.timeout_ms, retries=args.retries, skip_discovery=args.skip_discovery,
                              enable_profiling=args.profiling or None, enable_cve_match=args.cve_match or None,
                              stealth_level=args.stealth_level, host_gap_ms=args.host_gap_ms,
                              jitter_ms=args.jitter_ms, source_ports=args.source_ports)
        if clash := contradiction(request):
            return _fail(f"--{clash[0].replace('_', '-')}: {clash[1]}")
        scan = oneshot.prepare(cfg, request, targets, args.rate)
    except (config.ConfigError, TargetError, PortSpecError, PolicyError) as exc:
        return _fail(str(exc))
    try:
        oneshot.check_raw_sockets()
        if scan.skipped:
            print(f"netscand: skipping {scan.skipped} addresses listed in policy.excluded_targets", file=sys.stderr)
        return oneshot.run(scan, args.workers or cfg.workers, cfg.policy,
                           lambda: config.load(args.config).policy, lambda: Terminal(args.json))
    except oneshot.OneShotError as exc:
        print(f"netscand: {exc}", file=sys.stderr)
        return oneshot.EXIT_FAILED


class Terminal:
    """What `netscand scan` shows (a oneshot.View): progress as netscanctl shows it, then the
    result on stdout (a table, or JSON with --json) and what went wrong on stderr, a line each."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.bar = progress_bar()
        self.task = self.bar.add_task("scanning", total=None, found="")
        self.bar.start()

    def progress(self, now: oneshot.Progress) -> None:
        rate = now.probes_sent / max(now.elapsed_s, 1e-3)
        self.bar.update(self.task, completed=now.done, total=now.planned or None,
                        found=f"{now.probes_sent:,} probes  {rate:,.0f}/s  {now.hosts_up} hosts up")

    def swept(self, errors: list[str]) -> None:
        for error in errors:  # above the bar while it shows; plain lines elsewhere
            self.bar.console.print(f"netscand: {error}", markup=False, highlight=False, emoji=False, soft_wrap=True)

    def identifying(self) -> None:
        self.bar.update(self.task, description="identifying devices")

    def close(self) -> None:
        self.bar.stop()

    def outcome(self, outcome: oneshot.Outcome) -> None:
        if outcome.result is None:
            print(f"netscand: the scan failed: {outcome.failure}", file=sys.stderr)
            return
        if self.as_json:
            sys.stdout.buffer.write(orjson.dumps(outcome.result, option=orjson.OPT_INDENT_2) + b"\n")
        else:
            _print_table(outcome.result)


def _print_table(doc: dict) -> None:
    out = sys.stdout
    out.write(f"{doc['devices_found']} hosts up, {doc['open_ports_total']} open ports, "
              f"{doc['duration_seconds']} s\n")
    if "coverage" in doc:
        out.write(f"{coverage.summary(doc['coverage'])}\n")
    for d in doc["devices"]:
        about = [d["hostname"], d["mac"], d["vendor"], d["os_guess"] and f"OS: {d['os_guess']}"]
        out.write(f"\n{d['ip']}  " + "  ".join(a for a in about if a) + "\n")
        for p in d["ports"]:
            what = " ".join(filter(None, (p["service"], p.get("product"), p.get("version"))))
            out.write(f"  {p['port']:>5}/{p['protocol']:<4} {p['state']:<13} {what}\n")
            for _, f in findings.by_severity([("", f) for f in p.get("cves", ())]):
                out.write(f"        {f['severity'] or '-':<8} {f['id']:<16} {findings.status_text(f)}\n")
        for protocol, key in (("", "not_shown"), (" UDP", "not_shown_udp")):
            for state, count in d.get(key, {}).items():
                tarpit = " (a tarpit: it answers every port)" if state == "open" and d.get("tarpit") else ""
                out.write(f"  not shown: {count} {state}{protocol} ports{tarpit}\n")
        if d.get("udp_icmp_limited"):
            out.write("  (ICMP rate-limited: its open|filtered UDP ports are most likely closed)\n")
        if doubt := coverage.doubtful(d):
            out.write(f"  ({doubt})\n")
    if "cve_data" in doc:
        out.write(f"\n{findings.data_line(doc['cve_data'])}\n")
