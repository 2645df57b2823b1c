"""Benchmark of netscand's engine on the lab: all 65535 TCP ports of every lab host.

    python bench/engine.py [--hosts 32] [--rate 100000] [--loss PCT] [--compare] [--runs 1]
    python bench/engine.py --memory
    python bench/engine.py --smoke      # 2 hosts: seconds, to check it still runs (with any mode)

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
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from netscand.lab import Lab, LabError
from netscand.lab.harness import (
    Found,
    all_hosts,
    bench_exit,
    parse_bench_args,
    print_bench_footer,
    truth_open,
    unwind_on_sigterm,
)
from netscand.lab.namespaces import exec_argv

PORTS = 65535
ALL_PORTS = range(1, PORTS + 1)  # what every scanner scans here
PREFIX = "nsb"  # not nst/nsl (tests) nor nsd/dev (people's labs)
POLL_S = 0.05
MASSCAN_WAIT_S = 2
KIB = 1024
SMOKE = {"hosts": 2}


@dataclass
class Measured:
    """What one scanner process tree did, seen from outside."""
    wall: float
    tx: int  # frames scan0 sent during the run (probes, retries, RSTs, ARP)
    rx: int  # frames scan0 received
    hwm_sum_kb: int  # peak over samples of the sum of VmHWM of the tree's processes
    hwm_max_kb: int  # largest VmHWM of any one process
    pss_sum_kb: int  # peak over samples of the sum of Pss (shared pages counted once)
    procs: int  # most processes seen in the tree at once
    cpu_user: float  # CPU seconds of the whole tree, reaped descendants included
    cpu_sys: float
    returncode: int
    timed_out: bool
    stdout: str
    stderr: str


@dataclass
class Result:
    tool: str
    hosts: int
    run: Measured
    found: Found
    truth: Found
    note: str = ""
    recall: float = field(init=False)
    missed: Found = field(init=False)
    false_pos: Found = field(init=False)

    def __post_init__(self) -> None:
        self.missed = self.truth - self.found
        self.false_pos = self.found - self.truth
        self.recall = 1.0 if not self.truth else len(self.truth & self.found) / len(self.truth)

    @property
    def planned(self) -> int:
        return self.hosts * PORTS

    @property
    def planned_rate(self) -> float:
        return self.planned / self.run.wall

    @property
    def tx_rate(self) -> float:
        return self.run.tx / self.run.wall


# --- the process tree and its memory ------------------------------------------------------

def _parents() -> dict[int, int]:
    """pid -> ppid for every process (/proc/PID/task/*/children is not built into this kernel)."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path("/proc", entry.name, "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # comm may hold spaces and parentheses; the fields after the last ')' are fixed.
        parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    return parents


def tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _field_kb(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass  # exited meanwhile, or a kernel thread without the field
    return 0


class MemoryWatch:
    """Samples a process tree's memory; VmHWM is per process, so sum it over the tree."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.hwm_sum = self.hwm_max = self.pss_sum = self.procs = 0

    def sample(self) -> None:
        pids = tree(self.root)
        hwms = [_field_kb(f"/proc/{pid}/status", "VmHWM:") for pid in pids]
        # Forked workers share the parent's pages and the shm rings: VmHWM counts them in every
        # process, Pss splits them, so its sum is the tree's real footprint (sampled, not a peak).
        pss = sum(_field_kb(f"/proc/{pid}/smaps_rollup", "Pss:") for pid in pids)
        self.hwm_sum = max(self.hwm_sum, sum(hwms))
        self.hwm_max = max(self.hwm_max, *hwms)
        self.pss_sum = max(self.pss_sum, pss)
        self.procs = max(self.procs, sum(1 for h in hwms if h))


# --- running one scanner -------------------------------------------------------------------

def link_counters(lab: Lab) -> tuple[int, int]:
    """scan0's (tx, rx) frame counters: every frame any scanner sent or got, retries included."""
    out = subprocess.run(["ip", "-n", lab.scanner_ns, "-s", "-j", "link", "show", "scan0"],
                         capture_output=True, text=True, check=True).stdout
    stats = json.loads(out)[0]["stats64"]
    return int(stats["tx"]["packets"]), int(stats["rx"]["packets"])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Ends the process group we started: SIGINT twice first (masscan saves its output on the
    second one), then SIGKILL. Anything left inside the lab dies with lab.down() anyway."""
    for sig, grace in ((signal.SIGINT, 3), (signal.SIGINT, 3), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue


def run_measured(lab: Lab, argv: list[str], timeout: float, cwd: str) -> Measured:
    """Runs argv in the scanner namespace, sampling its memory every POLL_S until it exits."""
    tx0, rx0 = link_counters(lab)
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        # Own session: a Ctrl-C on the terminal reaches only us, and we stop the scanner in order.
        proc = subprocess.Popen(lab.scanner_argv(argv), stdout=out, stderr=err, cwd=cwd,
                                start_new_session=True)
        watch, timed_out = MemoryWatch(proc.pid), False
        try:
            while True:
                watch.sample()
                try:
                    proc.wait(timeout=POLL_S)  # returns at once on exit, so wall time is exact
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() - start > timeout:
                        timed_out = True
                        break
        finally:
            _stop(proc)
        wall = time.monotonic() - start
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    tx1, rx1 = link_counters(lab)
    return Measured(wall, tx1 - tx0, rx1 - rx0, watch.hwm_sum, watch.hwm_max, watch.pss_sum,
                    watch.procs, usage1.ru_utime - usage0.ru_utime, usage1.ru_stime - usage0.ru_stime,
                    proc.returncode, timed_out, stdout, stderr)


# --- the three scanners ----------------------------------------------------------------------

def scan_netscand(lab: Lab, ips: list[str], args: argparse.Namespace, cwd: str) -> Result:
    argv = [sys.executable, "-m", "netscand", "scan", ",".join(ips), "--ports", "-",
            "--rate", str(args.rate), "--json"]
    argv += ["--workers", str(args.workers)] if args.workers else []
    argv += ["--retries", str(args.retries)] if args.retries is not None else []
    timeout = len(ips) * PORTS / args.rate * 4 + 120
    run = run_measured(lab, argv, timeout, cwd)
    found: Found = set()
    try:
        for dev in json.loads(run.stdout)["devices"]:
            found |= {(dev["ip"], p["port"]) for p in dev["ports"]
                      if p["state"] == "open" and p.get("protocol", "tcp") == "tcp"}
    except (ValueError, KeyError, TypeError) as exc:
        return Result("netscand", len(ips), run, found, truth_open(lab, ALL_PORTS, ips), f"bad output: {exc}")
    return Result("netscand", len(ips), run, found, truth_open(lab, ALL_PORTS, ips))


def scan_nmap(lab: Lab, ips: list[str], cwd: str) -> Result:
    argv = ["nmap", "-sS", "-n", "-Pn", "-T4", "-p-", "--max-retries", "2", "-oX", "-", *ips]
    run = run_measured(lab, argv, 3600, cwd)
    found: Found = set()
    try:
        for host in ET.fromstring(run.stdout).iter("host"):
            addr = host.find("address[@addrtype='ipv4']")
            for port in host.iter("port"):
                state = port.find("state")
                if addr is not None and state is not None and state.get("state") == "open" \
                        and port.get("protocol") == "tcp":
                    found.add((addr.get("addr", ""), int(port.get("portid", "0"))))
    except ET.ParseError as exc:
        return Result("nmap", len(ips), run, found, truth_open(lab, ALL_PORTS, ips), f"bad XML: {exc}")
    return Result("nmap", len(ips), run, found, truth_open(lab, ALL_PORTS, ips))


def _masscan_json(path: Path) -> Found:
    """masscan -oJ writes one record per line between '[' and ']'; read what is there even if
    masscan was killed half way."""
    found: Found = set()
    text = path.read_text(errors="replace") if path.exists() else ""
    for line in text.splitlines():
        line = line.strip().rstrip(",")
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # the last, cut-off line
        found |= {(rec["ip"], p["port"]) for p in rec.get("ports", [])
                  if p.get("status") == "open" and p.get("proto") == "tcp"}
    return found


def _nudger(lab: Lab) -> subprocess.Popen[bytes]:
    """One UDP datagram a second from the router to the scanner's discard port: masscan's
    receive thread blocks in libpcap until a frame arrives, so after --wait it can hang with
    nothing to read (masscan issue 144). The scanner's kernel answers port unreachable: one
    frame a second each way, inside the lab, counted in scan0's counters."""
    target = (lab.truth["scanner"]["ip"], 9)
    code = ("import socket, time\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"while True: s.sendto(b'bench nudge', {target!r}); time.sleep(1)")
    argv = exec_argv(lab.truth["router"]["netns"], [sys.executable, "-c", code])
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def scan_masscan(lab: Lab, ips: list[str], rate: int, cwd: str) -> Result:
    # masscan never ARPs for targets: it sends every frame to one MAC, found by ARPing the
    # default gateway (the scanner namespace has none) or given by --router-mac (masscan
    # issues #695, #724). So the lab router's MAC is given for all hosts: routed hosts are
    # reached normally and on-link hosts by the router sending the frames back out of the
    # same port (hairpin, plus ICMP redirects). A host's MAC would reach only that host, and
    # ff:ff:ff:ff:ff:ff reaches none (TCP drops unicast IP that came as L2 broadcast).
    out = Path(cwd, "masscan.json")
    argv = ["masscan", "-p1-65535", "--rate", str(rate), "-e", "scan0",
            "--router-mac", lab.truth["router"]["mac"], "--adapter-ip", lab.truth["scanner"]["ip"],
            "--wait", str(MASSCAN_WAIT_S), "-oJ", str(out), ",".join(ips)]
    # masscan answers every reply, RST or SYN-ACK, with a RST of its own (unless --noreset),
    # and --rate paces those RSTs too: allow twice the probes' time before giving up.
    timeout = len(ips) * PORTS / rate * 2 + MASSCAN_WAIT_S + 30
    nudger = _nudger(lab)
    try:
        run = run_measured(lab, argv, timeout, cwd)
    finally:
        _stop(nudger)
    note = "killed after timeout; output read from its file" if run.timed_out else ""
    return Result("masscan", len(ips), run, _masscan_json(out), truth_open(lab, ALL_PORTS, ips), note)


# --- reporting -------------------------------------------------------------------------------

def mib(kb: float) -> str:
    return f"{kb / KIB:.1f}"


def report(res: Result) -> None:
    r = res.run
    status = f"exit {r.returncode}" + (" (timed out)" if r.timed_out else "")
    print(f"\n{res.tool}: {res.hosts} hosts x {PORTS} ports = {res.planned:,} probes planned; "
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

def bench(lab: Lab, args: argparse.Namespace, cwd: str) -> list[Result]:
    ips, results = all_hosts(lab), list[Result]()
    for _ in range(args.runs):
        results.append(scan_netscand(lab, ips, args, cwd))
        report(results[-1])
        if args.compare:
            results.append(scan_nmap(lab, ips, cwd))
            report(results[-1])
            results.append(scan_masscan(lab, ips, args.rate, cwd))
            report(results[-1])
    return results


def memory(lab: Lab, args: argparse.Namespace, cwd: str) -> list[Result]:
    """The same engine on 1 host and on all hosts: the peaks should be about equal."""
    ips, results = all_hosts(lab), list[Result]()
    for _ in range(args.runs):
        for targets in (ips[:1], ips):
            results.append(scan_netscand(lab, targets, args, cwd))
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
    args = parse_bench_args(p, SMOKE, argv)
    if args.runs < 1 or args.rate < 1:
        p.error("--runs and --rate must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress when piped
    unwind_on_sigterm()
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
