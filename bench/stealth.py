"""Stealth against scan detectors: netscand's stealth profile and nmap -T0 to -T4 on the detector lab, in one run.

    python bench/stealth.py [--hosts 4] [--ports 1000] [--seed 1] [--templates T0,T1,T2,T3,T4] [--json]
    python bench/stealth.py --smoke   # 2 hosts, 10 ports, a 200 ms gap, nmap -T4 only (lab nsss): judged on running

Builds a lab whose every host runs Debian's scanlogd and psad (netscand.lab.detectors) and scans
its hosts x the top N TCP ports (default 1000) with netscand at the default stealth level
(quiet: `--profile stealth`; with --ports under 1000, `custom` at quiet's gap, jitter, rate cap
and retries, without the ping sweep, as the stealth profile takes no port list) and with
`nmap -sS` at each timing template, all at the same time, each tool from its own source
address (netscand the scanner's own, each nmap a secondary address of the scanner's interface
in the lab's scan network, given to nmap by -S/-e), so the detectors' reports separate by
source. nmap -T0, -T1 and -T2 keep one probe outstanding at a time (parallelism 1, a scan delay
of 300 s, 15 s, 0.4 s): they scan a subset (one host, a few of its answering ports, so that
their time is their pace, not the timeouts of dropped ports) and their wall time is
extrapolated to the hosts x ports of the others, linearly in probes; the method is printed.

Prints per tool: wall time (measured, or extrapolated and marked ~), recall against the lab's
truth on what it scanned, the hosts whose scanlogd logged a scan from it, psad's danger level
and psad's signature matches; then the goal: no alert from any detector at the default stealth
level, in less time than the fastest nmap template that raised none. Alerting counts scanlogd's
alerts and psad's signature matches of the probe's shape (those that any SYN to their port
matches, VNC's 5900 and others, fire on a browser's connect() too and are shown apart). psad's
danger level counts a source's packets over a long window: no pacing under an hour stays below
it, so it is printed, not counted as evaded.

Exit status: 0 when the goal is met; 1 when a tool failed or it is not (with --smoke, only when
a tool failed); 2 if the lab could not be built. Every tool runs only inside the lab's scanner
namespace, on the lab's addresses only.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from profiling import Run, nmap_devices, run_timed

from netscand.lab import Lab, LabError, detectors
from netscand.lab.harness import (
    bench_exit,
    in_lab,
    open_ports,
    parse_bench_args,
    print_bench_footer,
    truth_open,
    unwind_on_sigterm,
)
from netscand.lab.truth import SCAN_NET
from netscand.scan.ports import top_ports
from netscand.scan.profiles import DEFAULT_LEVEL, STEALTH_LEVELS

PREFIX = "nss"  # not nst/nsl/nsh/nsdt/nsdu (tests), nsa/nsb/nsf/nsk/nsp/nsw (the other benches)
# The smoke's own: the full run lasts over an hour, and a lab up under its prefix would replace its lab.
SMOKE_PREFIX = "nsss"
LEVEL = STEALTH_LEVELS[DEFAULT_LEVEL]
TEMPLATES = ("T0", "T1", "T2", "T3", "T4")
# The slow templates' subsets: (hosts, ports). nmap's -T0 waits 300 s between probes, -T1 15 s,
# -T2 0.4 s, whatever the number of hosts.
SUBSETS = {"T0": (1, 2), "T1": (1, 8), "T2": (1, 50)}
# Secondary addresses of the scanner for nmap, one per template: in the lab's scan network,
# below its first host (truth.HOST_BASE), apart from the scanner's own and the router's.
NMAP_SOURCES = {template: f"198.18.0.{2 + i}" for i, template in enumerate(TEMPLATES)}
TIMEOUT_MARGIN = 2.0  # a tool is stopped after twice its expected time (plus a minute)
SMOKE = {"hosts": 2, "ports": 10, "host_gap_ms": 200, "jitter_ms": 50, "templates": "T4", "prefix": SMOKE_PREFIX}


@dataclass
class Job:
    """One tool's scan: what it was given, from where, and what came of it."""
    name: str
    source: str
    hosts: list[str]
    ports: list[int]
    argv: list[str]
    timeout: float
    factor: float = 1.0  # the full hosts x ports over this job's: its wall time is extrapolated by it
    run: Run | None = None

    @property
    def extrapolated(self) -> bool:
        return self.factor != 1.0

    @property
    def wall(self) -> float:
        assert self.run is not None
        return self.run.wall * self.factor


@dataclass
class Verdict:
    """What the detectors said of one source, and whether that counts as an alert."""
    scanlogd_hosts: set[str]
    danger_level: int
    shape_signatures: int  # psad matches of signatures that test the probe's shape
    port_signatures: int  # those any SYN to their port matches

    @property
    def alerted(self) -> bool:
        return bool(self.scanlogd_hosts or self.shape_signatures)


# --- the jobs ---------------------------------------------------------------------------------------

def netscand_job(lab: Lab, args: argparse.Namespace, hosts: list[str], ports: list[int]) -> Job:
    if (args.ports, args.host_gap_ms, args.jitter_ms) == (1000, LEVEL.gap_ms, LEVEL.jitter_ms):
        options = ["--profile", "stealth"]  # the default level, on its own top 1000
    else:
        options = ["--profile", "custom", "--ports", ",".join(map(str, ports)), "--host-gap-ms",
                   str(args.host_gap_ms), "--jitter-ms", str(args.jitter_ms), "--rate", f"{LEVEL.rate_cap:g}",
                   "--retries", str(LEVEL.retries), "--skip-discovery"]
    argv = [sys.executable, "-m", "netscand", "scan", ",".join(hosts), *options, "--json"]
    expected = len(ports) * (args.host_gap_ms + args.jitter_ms / 2) / 1000 * (1 + LEVEL.retries)
    return Job("netscand stealth", lab.truth["scanner"]["ip"], hosts, ports, argv, 60 + TIMEOUT_MARGIN * expected)


def answering_ports(lab: Lab, host: str, ports: list[int], count: int) -> list[int]:
    """The first `count` of `ports` the host answers (open or closed, not dropped)."""
    dropped = next(set(h["filtered"]) for h in lab.truth["hosts"] if h["ip"] == host)
    return [p for p in ports if p not in dropped][:count]


def nmap_job(lab: Lab, template: str, hosts: list[str], ports: list[int], index: int) -> Job:
    full = len(hosts) * len(ports)
    if template in SUBSETS:
        n_hosts, n_ports = SUBSETS[template]
        # A host of its own per slow template, so no scanlogd logs more scans than it would alone.
        hosts = [hosts[(index + i) % len(hosts)] for i in range(n_hosts)]
        ports = answering_ports(lab, hosts[0], ports, n_ports)
    source = NMAP_SOURCES[template]
    argv = ["nmap", "-sS", f"-{template}", "-n", "-Pn", "-S", source, "-e", lab.truth["scanner"]["ifname"],
            "-p", ",".join(map(str, ports)), "-oX", "-", *hosts]
    delay = {"T0": 300.0, "T1": 15.0, "T2": 0.4}.get(template, 0.01)
    # nmap waits its scan delay around its first and last probe too.
    timeout = 120 + TIMEOUT_MARGIN * delay * (len(hosts) * len(ports) + 2)
    return Job(f"nmap -{template}", source, hosts, ports, argv, timeout, full / (len(hosts) * len(ports)))


def check_sources(lab: Lab) -> list[str]:
    """nmap's source addresses, refused unless in the lab's scan network and no lab machine's."""
    taken = {h["ip"] for h in lab.truth["hosts"]} | set(lab.truth["router"]["ips"]) | {lab.truth["scanner"]["ip"]}
    sources = in_lab(list(NMAP_SOURCES.values()))
    bad = [ip for ip in sources if ip in taken or ipaddress.ip_address(ip) not in ipaddress.ip_network(SCAN_NET)]
    if bad:
        raise LabError(f"nmap source addresses {bad} are a lab machine's or outside {SCAN_NET}")
    return sources


def set_sources(lab: Lab, sources: list[str], action: str) -> None:
    """Add ("add") or remove ("del") the addresses on the scanner's interface: host routes (/32),
    so the scanner's own address and routes stay as they are."""
    for ip in sources:
        subprocess.run(["ip", "-n", lab.scanner_ns, "addr", action, f"{ip}/32", "dev", lab.truth["scanner"]["ifname"]],
                       check=action == "add", capture_output=True)


def shown(job: Job) -> str:
    """The job's command line, a long port list cut to its first ports and its length."""
    listed = ",".join(map(str, job.ports))
    cut = f"{','.join(map(str, job.ports[:5]))},... ({len(job.ports)} ports)"
    return shlex.join(cut if arg == listed and len(job.ports) > 10 else arg for arg in job.argv)


# --- running them -----------------------------------------------------------------------------------

def run_job(lab: Lab, job: Job) -> Job:
    run, stdout = run_timed(lab, job.name, job.argv, job.timeout)
    if not run.note:
        try:
            run.devices = (json.loads(stdout)["devices"] if job.name.startswith("netscand")
                           else nmap_devices(ET.fromstring(stdout)))
        except (ValueError, KeyError, TypeError, ET.ParseError) as exc:
            run.note = f"bad output: {exc}"
    job.run = run
    print(f"{job.name}: {run.wall:.1f} s, exit {run.returncode}{' ' + run.note if run.note else ''}")
    return job


def run_all(lab: Lab, jobs: list[Job]) -> detectors.Report:
    """Every job at once; what the detectors flagged from their start to the last one's end."""
    time.sleep(detectors.SCANLOGD_DELAY_S + 0.5)  # the lab's own start-up apart from the scans
    since = detectors.mark(lab)
    pool = ThreadPoolExecutor(max_workers=len(jobs))
    try:
        futures: list[Future[Job]] = [pool.submit(run_job, lab, job) for job in jobs]
        for future in futures:
            future.result()
    finally:
        # On Ctrl-C the tools run on until the lab goes down (its teardown stops what runs in
        # its namespaces): the threads waiting for them are not waited for here.
        pool.shutdown(wait=False, cancel_futures=True)
    return detectors.alerts(lab, since=since, settle_s=2)


# --- reporting ----------------------------------------------------------------------------------------

def verdict(report: detectors.Report, source: str) -> Verdict:
    matches = report.signatures(source)
    shape = report.signatures(source, shape_only=True)
    return Verdict(report.scanlogd_hosts(source), report.danger_level(source), len(shape), len(matches) - len(shape))


def recall(lab: Lab, job: Job) -> tuple[int, int, int]:
    """(found, of the truth's open ports among what it scanned, false positives)"""
    assert job.run is not None
    want, got = truth_open(lab, job.ports, job.hosts), open_ports({"devices": job.run.devices})
    return len(want & got), len(want), len(got - want)


def failed(job: Job) -> bool:
    return job.run is None or job.run.failed


def wall_cell(job: Job) -> str:
    if failed(job):
        return "failed"
    return f"~{job.wall:.0f} s" if job.extrapolated else f"{job.wall:.1f} s"


def print_table(lab: Lab, jobs: list[Job], verdicts: list[Verdict], n_hosts: int) -> None:
    print(f"\n{'tool':<17} | {'scanned':<11} | {'wall time':<12} | {'recall':<21} | {'scanlogd':<13} | "
          f"{'psad DL':<7} | psad signatures")
    for job, v in zip(jobs, verdicts):
        found, whole, fp = recall(lab, job)
        share = f"{100 * found / whole:.1f}%" if whole else "-"
        print(f"{job.name:<17} | {len(job.hosts)} x {len(job.ports):<7} | {wall_cell(job):<12} | "
              f"{f'{share} ({found}/{whole}, FP {fp})':<21} | {f'{len(v.scanlogd_hosts)}/{len(job.hosts)} hosts':<13} | "
              f"{v.danger_level:<7} | {v.shape_signatures} (+{v.port_signatures} port-only)")
    for job in jobs:
        if job.extrapolated and not failed(job):
            assert job.run is not None
            print(f"  {job.name}: measured {len(job.hosts)} host{'s' if len(job.hosts) > 1 else ''} x {len(job.ports)} ports in {job.run.wall:.1f} s; "
                  f"x{job.factor:g} (the {n_hosts} x {len(jobs[0].ports)} probes of the others over its "
                  f"{len(job.hosts) * len(job.ports)}, one probe at a time) = ~{job.wall:.0f} s")


def goal(args: argparse.Namespace, jobs: list[Job], verdicts: list[Verdict]) -> tuple[bool, str]:
    """netscand raised no alert at the default level's pace, and took less time than every nmap
    template that raised none."""
    ours, ours_v = jobs[0], verdicts[0]
    if failed(ours):
        return False, "not judged: netscand failed"
    if (args.host_gap_ms, args.jitter_ms) != (LEVEL.gap_ms, LEVEL.jitter_ms):
        return False, (f"not judged: netscand paced {args.host_gap_ms} ms + 0-{args.jitter_ms} ms, not the "
                       f"{LEVEL.name} level's {LEVEL.gap_ms} + 0-{LEVEL.jitter_ms} ms")
    quiet = [(job.wall, job) for job, v in zip(jobs[1:], verdicts[1:]) if not (v.alerted or failed(job))]
    if ours_v.alerted:
        return False, (f"netscand alerted (scanlogd on {len(ours_v.scanlogd_hosts)} hosts, "
                       f"{ours_v.shape_signatures} psad signature matches of its shape)")
    if not quiet:
        return True, f"no alert from netscand in {wall_cell(ours)}; every nmap template that ran raised one"
    fastest = min(quiet, key=lambda pair: pair[0])[1]
    met = ours.wall < fastest.wall
    return met, (f"no alert from netscand in {wall_cell(ours)}; fastest nmap without an alert: {fastest.name} in "
                 f"{wall_cell(fastest)}: netscand x{ours.wall / fastest.wall:.4f} of its time")


def figures(lab: Lab, jobs: list[Job], verdicts: list[Verdict], report: detectors.Report,
            met: bool) -> dict[str, Any]:
    return {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "goal_met": met,
            "flooded": sorted(report.flooded),
            "tools": {j.name: {"source": j.source, "hosts": len(j.hosts), "ports": len(j.ports),
                               "wall": round(j.wall, 2), "measured_wall": round(j.run.wall, 2) if j.run else None,
                               "extrapolated": j.extrapolated, "recall": recall(lab, j),
                               "scanlogd_hosts": sorted(v.scanlogd_hosts), "psad_danger_level": v.danger_level,
                               "psad_shape_signatures": v.shape_signatures, "psad_port_signatures": v.port_signatures}
                      for j, v in zip(jobs, verdicts)}}


def report_all(lab: Lab, args: argparse.Namespace, jobs: list[Job], report: detectors.Report) -> bool:
    """Prints the figures; True when every tool ran and the goal is met."""
    verdicts = [verdict(report, job.source) for job in jobs]
    print_table(lab, jobs, verdicts, args.hosts)
    if report.flooded:
        print(f"\nscanlogd stopped logging for a while on {', '.join(sorted(report.flooded))} (later scans unlogged)")
    for run in (job.run for job in jobs if job.run and job.run.failed):
        print(f"\n{run.tool} failed: exit {run.returncode} {run.note}\n  " + run.stderr.strip()[-600:])
    met, why = goal(args, jobs, verdicts)
    print("\nalerting: a scanlogd alert, or a psad signature match of the probe's shape; psad's danger level "
          "(packets per source) is shown, not counted")
    print(f"goal (no alert at the default stealth level, faster than nmap's fastest template without one): "
          f"{'met' if met else 'NOT met'}: {why}")
    if args.json:
        print(json.dumps(figures(lab, jobs, verdicts, report, met), indent=1))
    return not any(map(failed, jobs)) and met


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=4, help="lab hosts (default 4)")
    p.add_argument("--ports", type=int, default=1000, help="the top N TCP ports (default 1000, the stealth profile's)")
    p.add_argument("--seed", type=int, default=1, help="lab seed (default 1)")
    p.add_argument("--host-gap-ms", type=int, default=LEVEL.gap_ms,
                   help=f"netscand's per-host gap (default {LEVEL.gap_ms}, the {LEVEL.name} level's)")
    p.add_argument("--jitter-ms", type=int, default=LEVEL.jitter_ms,
                   help=f"netscand's jitter (default {LEVEL.jitter_ms}, the {LEVEL.name} level's)")
    p.add_argument("--templates", default=",".join(TEMPLATES), help="nmap's timing templates (default T0-T4)")
    p.add_argument("--prefix", default=PREFIX, help=f"the lab's prefix (default {PREFIX}; the smoke's {SMOKE_PREFIX})")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parse_bench_args(p, SMOKE, argv)
    args.templates = [t.strip() for t in args.templates.split(",") if t.strip()]
    if unknown := set(args.templates) - set(TEMPLATES):
        p.error(f"unknown templates {sorted(unknown)}: choose among {','.join(TEMPLATES)}")
    return args


def scan_all(lab: Lab, args: argparse.Namespace) -> tuple[list[Job], detectors.Report]:
    hosts = in_lab([h["ip"] for h in lab.truth["hosts"]])
    ports = list(top_ports(args.ports))
    jobs = [netscand_job(lab, args, hosts, ports)]
    jobs += [nmap_job(lab, t, hosts, ports, i) for i, t in enumerate(args.templates)]
    print(f"lab {args.prefix}: {len(hosts)} hosts ({', '.join(hosts)}) x top {len(ports)} TCP ports; seed {args.seed}; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    for job in jobs:
        print(f"{job.name} from {job.source}: {shown(job)}")
    sources = [job.source for job in jobs[1:]]
    set_sources(lab, sources, "add")
    try:
        return jobs, run_all(lab, jobs)
    finally:
        set_sources(lab, sources, "del")


def main() -> int:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress when piped
    unwind_on_sigterm()
    try:
        lab = Lab.up(hosts=args.hosts, seed=args.seed, prefix=args.prefix, detectors=True)
    except LabError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    try:
        check_sources(lab)
        jobs, report = scan_all(lab, args)
        ok = report_all(lab, args, jobs, report)
    finally:
        lab.down()
    print_bench_footer()
    if args.smoke:  # a small gap on a few ports: the figures show the bench runs, not the evasion
        return 1 if any(map(failed, jobs)) else 0
    return 0 if ok else 1


if __name__ == "__main__":
    bench_exit(main)
