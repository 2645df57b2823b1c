"""Benchmark of netscand's engine on the lab: all 65535 TCP ports of every lab host.

    python bench/engine.py [--hosts 32] [--rate 100000] [--loss PCT] [--compare] [--runs 1]
    python bench/engine.py --memory
    python bench/engine.py --smoke      # 2 hosts: seconds, to check it still runs (with any mode)
    python bench/engine.py --matrix [--cells GLOBS] [--tools T,..] [--cap S] [--json FILE]

--matrix is issue 14's race, netscand at its defaults (the one-shot, and a request to the
running daemon) against nmap and masscan (matrix.py, served.py).

Prints, per run: probes planned, probes/s (planned/wall and frames really sent, read from
scan0's TX counter, so retries count), replies/s (scan0 RX), wall time, recall and false
positives against the lab's truth, and peak memory of the scan's whole process tree.
--compare also runs nmap and masscan on the same lab; --memory scans 1 host and N hosts to
show that memory does not grow with the target's size.

Exit status: 0; 1 if netscand failed, or missed an open port on a lab without loss; 2 if
the lab could not be built. Every scanner runs only inside the lab's scanner namespace, which
has no route out of 198.18.0.0/15.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import matrix
from runners import (
    Result,
    Targets,
    masscan_timeout,
    scan_masscan,
    scan_netscand,
    scan_nmap,
)

from netscand.lab import Lab, LabError
from netscand.lab.harness import (
    all_hosts,
    bench_exit,
    parse_bench_args,
    print_bench_footer,
    unwind_on_sigterm,
)

ALL_PORTS = range(1, 65536)  # what every scanner scans here, but in --matrix
PREFIX = "nsb"  # not nst/nsl (tests) nor nsd/dev (people's labs)
NMAP_TIMEOUT_S = 3600
KIB = 1024
# --matrix --smoke: the 1-1024 cells and a /23 for the routed one (half of it blackholed), every
# run cut at 20 s; the full-range cells take the same path, only longer.
SMOKE = {"hosts": 2, "cap": 20, "wide_prefixlen": 23, "cells": "p1024-*,routed16"}


# --- reporting -------------------------------------------------------------------------------

def mib(kb: float) -> str:
    return f"{kb / KIB:.1f}"


def report(res: Result) -> None:
    r = res.run
    status = f"exit {r.returncode}" + (" (timed out)" if r.timed_out else "")
    print(f"\n{res.tool}: {res.hosts} hosts x {len(res.targets.ports)} ports = {res.planned:,} probes planned; "
          f"{status}" + (f"; {res.note}" if res.note else ""))
    print(f"  wall {r.wall:.2f} s | CPU {r.cpu_user:.2f} s user + {r.cpu_sys:.2f} s system")
    print(f"  {res.planned_rate:,.0f} probes/s (planned/wall) | {res.tx_rate:,.0f} frames/s sent "
          f"(scan0 tx: {r.tx:,} frames, retries and RSTs included) | {r.rx / r.wall:,.0f} replies/s "
          f"(scan0 rx: {r.rx:,})")
    print(f"  recall {res.recall:.2%} ({len(res.truth) - len(res.missed)}/{len(res.truth)} open "
          f"ports) | false positives {len(res.false_pos)}")
    print(f"  peak memory: sum of VmHWM {mib(r.hwm_sum_kb)} MiB over {r.procs} processes, largest "
          f"process {mib(r.hwm_max_kb)} MiB, sum of Pss {mib(r.pss_sum_kb)} MiB")
    for label, ports in (("missed", res.missed), ("false positives", res.false_pos)):
        if ports:
            shown = ", ".join(f"{ip}:{p}" for ip, p in sorted(ports)[:12])
            print(f"  {label}: {shown}" + (" ..." if len(ports) > 12 else ""))
    if r.returncode and r.stderr.strip():
        print("  stderr: " + r.stderr.strip()[-600:].replace("\n", "\n          "))


def table(results: list[Result]) -> None:
    head = (f"{'tool':<9} {'hosts':>5} {'wall s':>8} {'planned/s':>10} {'tx/s':>10} {'rx/s':>10} "
            f"{'tx frames':>11} {'CPU s':>6} {'recall':>8} {'FP':>4} {'ΣHWM MiB':>9} "
            f"{'max MiB':>8} {'ΣPss MiB':>9} {'rc':>3}")
    print("\n" + head + "\n" + "-" * len(head))
    for res in results:
        r = res.run
        print(f"{res.tool:<9} {res.hosts:>5} {r.wall:>8.2f} {res.planned_rate:>10,.0f} "
              f"{res.tx_rate:>10,.0f} {r.rx / r.wall:>10,.0f} {r.tx:>11,} "
              f"{r.cpu_user + r.cpu_sys:>6.1f} {res.recall:>8.2%} {len(res.false_pos):>4} "
              f"{mib(r.hwm_sum_kb):>9} {mib(r.hwm_max_kb):>8} {mib(r.pss_sum_kb):>9} "
              f"{r.returncode:>3}")


def ratios(results: list[Result]) -> None:
    """netscand against each other tool, on the median of each tool's runs."""
    def medians(tool: str) -> tuple[float, float, float] | None:
        runs = [r for r in results if r.tool == tool]
        if not runs:
            return None
        return (statistics.median(r.run.wall for r in runs),
                statistics.median(r.planned_rate for r in runs),
                statistics.median(r.tx_rate for r in runs))

    ours = medians("netscand")
    for other in ("nmap", "masscan"):
        theirs = medians(other)
        if ours and theirs:
            print(f"netscand/{other}: wall time x{ours[0] / theirs[0]:.3f}, probes/s (planned/wall) "
                  f"x{ours[1] / theirs[1]:.2f}, frames sent/s (scan0 tx) x{ours[2] / theirs[2]:.2f}")


# --- modes -----------------------------------------------------------------------------------

def _netscand_options(args: argparse.Namespace) -> list[str]:
    return (["--rate", str(args.rate)] + (["--workers", str(args.workers)] if args.workers else [])
            + (["--retries", str(args.retries)] if args.retries is not None else []))


def _netscand(lab: Lab, ips: list[str], args: argparse.Namespace, cwd: str) -> Result:
    targets = Targets.hosts(ips, ALL_PORTS)
    timeout = targets.planned / args.rate * 4 + 120
    return scan_netscand(lab, targets, timeout, cwd, _netscand_options(args))


def bench(lab: Lab, args: argparse.Namespace, cwd: str) -> list[Result]:
    ips, results = all_hosts(lab), list[Result]()
    targets = Targets.hosts(ips, ALL_PORTS)
    for _ in range(args.runs):
        results.append(_netscand(lab, ips, args, cwd))
        report(results[-1])
        if args.compare:
            results.append(scan_nmap(lab, targets, NMAP_TIMEOUT_S, cwd))
            report(results[-1])
            results.append(scan_masscan(lab, targets, args.rate, masscan_timeout(targets, args.rate), cwd))
            report(results[-1])
    return results


def memory(lab: Lab, args: argparse.Namespace, cwd: str) -> list[Result]:
    """The same engine on 1 host and on all hosts: the peaks should be about equal."""
    ips, results = all_hosts(lab), list[Result]()
    for _ in range(args.runs):
        for chosen in (ips[:1], ips):
            results.append(_netscand(lab, chosen, args, cwd))
            report(results[-1])
    print()
    for label, key in (("sum of VmHWM", "hwm_sum_kb"), ("largest VmHWM", "hwm_max_kb"),
                       ("sum of Pss", "pss_sum_kb")):
        small = statistics.median(getattr(r.run, key) for r in results if r.hosts == 1)
        large = statistics.median(getattr(r.run, key) for r in results if r.hosts == len(ips))
        print(f"{label}: 1 host {mib(small)} MiB, {len(ips)} hosts {mib(large)} MiB, "
              f"x{large / small:.3f}")
    return results


def failed(results: list[Result], loss_pct: float) -> bool:
    ours = [r for r in results if r.tool == "netscand"]
    broken = any(r.run.returncode or r.run.timed_out or r.note for r in ours)
    return broken or (loss_pct == 0 and any(r.recall < 1 for r in ours))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=32, help="lab hosts (default 32)")
    # The default is policy.max_rate's: the fastest a default install lets a scan ask for.
    p.add_argument("--rate", type=int, default=100_000, help="probes/s for netscand and masscan")
    p.add_argument("--loss", type=float, default=0.0, help="packet loss on the scanner's link, %%")
    p.add_argument("--seed", type=int, default=1, help="lab seed (default 1)")
    p.add_argument("--runs", type=int, default=1, help="repeat every scan this many times")
    p.add_argument("--workers", type=int, help="netscand --workers (default: its own)")
    p.add_argument("--retries", type=int, help="netscand --retries (default: its own)")
    p.add_argument("--compare", action="store_true", help="also run nmap and masscan")
    p.add_argument("--memory", action="store_true", help="netscand on 1 host, then on all hosts")
    matrix.add_options(p)
    args = parse_bench_args(p, SMOKE, argv)
    if args.runs < 1 or args.rate < 1:
        p.error("--runs and --rate must be at least 1")
    try:
        matrix.chosen(args)
    except ValueError as exc:
        p.error(str(exc))
    return args


def run_matrix(args: argparse.Namespace) -> int:
    """Exit 1 if netscand failed in a cell (a goal not met is in the figures, not the status)."""
    print(f"matrix: {args.hosts} lab hosts, seed {args.seed}; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")
    try:
        done = matrix.run(args, PREFIX)
    except LabError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    found = matrix.report(done, args)
    if args.json:
        matrix.write_json(args.json, done, found, args)
    print_bench_footer()
    broken = [r for _, r in done if r.tool in matrix.OURS
              and ((r.run.returncode and not r.run.timed_out) or r.note.startswith(("bad output", "failed")))]
    return 1 if broken else 0


def main() -> int:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress when piped
    unwind_on_sigterm()
    if args.matrix:
        return run_matrix(args)
    try:
        lab = Lab.up(hosts=args.hosts, loss_pct=args.loss, seed=args.seed, prefix=PREFIX)
    except LabError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    try:
        print(f"lab {PREFIX}: {args.hosts} hosts ({sum(h['routed'] for h in lab.truth['hosts'])} "
              f"behind the router), loss {args.loss}%, seed {args.seed}; {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.2f}")
        with tempfile.TemporaryDirectory(prefix="bench-engine-") as cwd:  # masscan's paused.conf
            results = memory(lab, args, cwd) if args.memory else bench(lab, args, cwd)
    finally:
        lab.down()
    table(results)
    ratios(results)
    # Other work on the machine shares its cores with the lab, which runs on them too.
    print_bench_footer()
    return 1 if failed(results, args.loss) else 0


if __name__ == "__main__":
    bench_exit(main)
