"""The three scanners run on a lab and measured from outside: netscand, nmap, masscan.

Each runner starts its tool in the lab's scanner namespace (which has no route out of
198.18.0.0/15), samples the memory of its process tree until it exits or is stopped at a
timeout, and reads the open TCP ports it reported, what it had written so far included.
bench/engine.py and bench/matrix.py share them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from netscand.lab import Lab, LabError
from netscand.lab.harness import Found, in_lab, truth_open
from netscand.lab.namespaces import exec_argv

BENCH_RANGE = ipaddress.IPv4Network("198.18.0.0/15")  # no target may leave it, whatever a cell says
POLL_S = 0.05
MASSCAN_WAIT_S = 2
NMAP_ARGS = ("-sS", "-n", "-T4", "--max-retries", "2")  # as in issue 14's table; -Pn where ports are the point


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

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys


@dataclass(frozen=True)
class Targets:
    """What a scanner is pointed at: addresses or CIDR blocks, all inside the bench range."""
    specs: tuple[str, ...]
    ports: range

    def __post_init__(self) -> None:
        outside = [s for s in self.specs if not ipaddress.IPv4Network(s).subnet_of(BENCH_RANGE)]
        if outside:
            raise LabError(f"refusing to scan {outside}: outside {BENCH_RANGE}")

    @classmethod
    def hosts(cls, ips: list[str], ports: range) -> Targets:
        return cls(tuple(in_lab(ips)), ports)

    @property
    def addresses(self) -> int:
        return sum(ipaddress.ip_network(s).num_addresses for s in self.specs)

    @property
    def planned(self) -> int:
        return self.addresses * len(self.ports)

    @property
    def port_spec(self) -> str:
        return f"{self.ports.start}-{self.ports.stop - 1}"

    def truth(self, lab: Lab) -> Found:
        """The lab's open TCP ports among these ports and addresses, the router's included."""
        nets = [ipaddress.ip_network(s) for s in self.specs]
        inside = [h["ip"] for h in lab.truth["hosts"] if any(ipaddress.ip_address(h["ip"]) in n for n in nets)]
        router = {(ip, p) for ip in lab.truth["router"]["ips"] for p in lab.truth["router"]["open"]
                  if p in self.ports and any(ipaddress.ip_address(ip) in n for n in nets)}
        return truth_open(lab, self.ports, inside) | router


@dataclass
class Result:
    tool: str
    targets: Targets
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
    def hosts(self) -> int:
        return self.targets.addresses

    @property
    def planned(self) -> int:
        return self.targets.planned

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

def scan_netscand(lab: Lab, targets: Targets, timeout: float, cwd: str, extra: list[str] | None = None) -> Result:
    """`netscand scan TARGETS --ports P --json`, plus `extra` options (none: its defaults)."""
    argv = [sys.executable, "-m", "netscand", "scan", ",".join(targets.specs), "--ports", targets.port_spec,
            "--json", *(extra or [])]
    run = run_measured(lab, argv, timeout, cwd)
    found: Found = set()
    note = "timed out: no result printed" if run.timed_out else ""
    try:
        if not run.timed_out:
            for dev in json.loads(run.stdout)["devices"]:
                found |= {(dev["ip"], p["port"]) for p in dev["ports"]
                          if p["state"] == "open" and p.get("protocol", "tcp") == "tcp"}
    except (ValueError, KeyError, TypeError) as exc:
        note = f"bad output: {exc}"
    return Result("netscand", targets, run, found, targets.truth(lab), note)


def _nmap_hosts(xml: str) -> Found:
    """The open TCP ports of every <host> nmap finished writing: a run stopped at a timeout
    leaves its XML cut off, and the hosts before the cut still count."""
    found: Found = set()
    parser = ET.XMLPullParser(events=("end",))
    try:
        parser.feed(xml)
        for _, elem in parser.read_events():
            if elem.tag != "host":
                continue
            addr = elem.find("address[@addrtype='ipv4']")
            for port in elem.iter("port"):
                state = port.find("state")
                if addr is not None and state is not None and state.get("state") == "open" \
                        and port.get("protocol") == "tcp":
                    found.add((addr.get("addr", ""), int(port.get("portid", "0"))))
    except ET.ParseError:
        pass  # the cut: what came before it is read
    return found


def scan_nmap(lab: Lab, targets: Targets, timeout: float, cwd: str, discovery: bool = False) -> Result:
    """nmap -sS -n -T4 --max-retries 2, with -Pn unless `discovery` (then nmap's own host discovery)."""
    argv = ["nmap", *NMAP_ARGS, *([] if discovery else ["-Pn"]), f"-p{targets.port_spec}", "-oX", "-",
            *targets.specs]
    run = run_measured(lab, argv, timeout, cwd)
    note = "timed out: XML read up to the cut" if run.timed_out else ""
    return Result("nmap", targets, run, _nmap_hosts(run.stdout), targets.truth(lab), note)


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


def masscan_timeout(targets: Targets, rate: int) -> float:
    """masscan answers every reply, RST or SYN-ACK, with a RST of its own (unless --noreset),
    and --rate paces those RSTs too: twice the probes' time before giving up."""
    return targets.planned / rate * 2 + MASSCAN_WAIT_S + 30


def scan_masscan(lab: Lab, targets: Targets, rate: int, timeout: float, cwd: str) -> Result:
    # masscan never ARPs for targets: it sends every frame to one MAC, found by ARPing the
    # default gateway (the scanner namespace has none) or given by --router-mac (masscan
    # issues #695, #724). So the lab router's MAC is given for all hosts: routed hosts are
    # reached normally and on-link hosts by the router sending the frames back out of the
    # same port (hairpin, plus ICMP redirects). A host's MAC would reach only that host, and
    # ff:ff:ff:ff:ff:ff reaches none (TCP drops unicast IP that came as L2 broadcast).
    out = Path(cwd, "masscan.json")
    out.unlink(missing_ok=True)  # a previous run's output is not this one's
    argv = ["masscan", f"-p{targets.port_spec}", "--rate", str(rate), "-e", "scan0",
            "--router-mac", lab.truth["router"]["mac"], "--adapter-ip", lab.truth["scanner"]["ip"],
            "--wait", str(MASSCAN_WAIT_S), "-oJ", str(out), ",".join(targets.specs)]
    nudger = _nudger(lab)
    try:
        run = run_measured(lab, argv, timeout, cwd)
    finally:
        _stop(nudger)
    note = "timed out: output read from its file" if run.timed_out else ""
    return Result("masscan", targets, run, _masscan_json(out), targets.truth(lab), note)
