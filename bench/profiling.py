"""Device profiling against nmap: netscand and `nmap -sV -O` on the same lab, graded field by field.

    python bench/profiling.py [--hosts 8] [--seed 1] [--runs 1] [--normal] [--nmap-args="-T4"] [--json]
    python bench/profiling.py --smoke   # one server on its own ports, nmap -T5: seconds, judged on running

Builds a lab with the server hosts (real sshd, nginx, vsftpd, redis, mariadb, snmpd; dnsmasq on
the router), scans every lab address with both tools on the same TCP port list, and grades each
open server port's service, product and version, and each server's OS, against the lab's truth
(netscand.lab.grade: the same rules for both tools). Prints the agreement table, every port where
a tool disagrees with the truth, both wall times and their ratio; then what only netscand reports
(UDP services, names, MAC vendors), graded too.

Exit status: 0 when netscand is at least as accurate as nmap on every field and faster; 1 when a
tool failed or netscand is not (with --smoke, only when a tool failed: its sizes say nothing of
the target); 2 if the lab could not be built. Both tools run only inside the
lab's scanner namespace, which has no route out of the lab.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from netscand.lab import Lab, LabError
from netscand.lab.grade import OK, UNKNOWN, WRONG, Grade, grade, identity_grades
from netscand.lab.harness import (
    bench_exit,
    in_lab,
    parse_bench_args,
    print_bench_footer,
    unwind_on_sigterm,
)
from netscand.scan.ports import top_ports

PREFIX = "nsp"  # not nst/nsl (tests), nsb (engine bench), nsa/nsd/nsx (others' labs)
FIELDS = ("service", "product", "version", "os")
VERDICTS = (OK, UNKNOWN, WRONG)
NETSCAND_TIMEOUT_S = 600
NMAP_TIMEOUT_S = 3600  # -sV -O waits out every probe's timeout on silent ports
STOP_GRACE_S = 5
# nmap says "domain" where netscand, like the lab's truth, says "dns"; other names agree.
NMAP_NAMES = {"domain": "dns"}
# nmap marks a service spoken over TLS with tunnel="ssl" ("ssl/http" in its table); netscand
# names those the way profiling/services/detector.py does.
NMAP_TLS_NAMES = {"http": "https", "imap": "imaps", "pop3": "pop3s", "smtp": "smtps", "ftp": "ftps"}
# s2 (vsftpd, redis) is the server nmap -sV -O gets through fastest: about 8 s at -T5.
SMOKE = {"hosts": 1, "server": "s2", "nmap_args": "-T5 --max-os-tries 1"}
CLOSED_PORT = 1  # no lab host listens there: OS detection wants a closed port beside the open ones

Key = tuple[str, str, str]  # (host, field, where): one graded fact


@dataclass
class Run:
    """One scan by one tool: its wall time and the devices it reported, in netscand's shape."""
    tool: str
    wall: float
    returncode: int
    devices: list[dict[str, Any]]
    note: str = ""  # why its output could not be read, if it could not
    stderr: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.returncode or self.note)


@dataclass
class Tool:
    """A scanner and the TCP ports it was asked about, which decide what it is graded on."""
    name: str
    scanned: set[int]
    runs: list[Run] = field(default_factory=list)

    @property
    def median_wall(self) -> float:
        return statistics.median(r.wall for r in self.runs)


# --- targets and ports -------------------------------------------------------------------------

def lab_targets(lab: Lab, server: str | None = None) -> list[str]:
    """Every lab host and both router addresses, or the one server named; refuses anything
    outside the lab's two /24s, whatever the truth file says."""
    ips = [h["ip"] for h in lab.truth["hosts"]] + list(lab.truth["router"]["ips"])
    if server is not None:
        ips = [h["ip"] for h in lab.truth["hosts"] if h["name"] == server]
        if not ips:
            raise LabError(f"no server {server!r} in the lab")
    return in_lab(ips)


def port_list(truth: dict[str, Any], server: str | None = None) -> list[int]:
    """The top 1000 plus every server port of the truth (Redis's 6379 is not in the top 1000),
    so neither tool is graded on a port it was not asked to scan; for one server, its own
    ports and a closed one."""
    if server is not None:
        host = next(h for h in truth["hosts"] if h["name"] == server)
        return sorted({int(p) for p in host.get("services", {})} | {CLOSED_PORT})
    served = {int(p) for h in [*truth["hosts"], truth["router"]] for p in h.get("services", {})}
    return sorted(set(top_ports(1000)) | served)


# --- running the tools ---------------------------------------------------------------------------

def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the tool's whole process group, SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.communicate(timeout=STOP_GRACE_S)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def run_timed(lab: Lab, tool: str, argv: list[str], timeout: float) -> tuple[Run, str]:
    """Runs argv in the scanner namespace; the wall time includes the tool's own start-up.
    Returns the run without devices, and the tool's stdout."""
    start = time.monotonic()
    # Own session: a Ctrl-C on the terminal reaches only us, and we stop the whole tree.
    proc = subprocess.Popen(lab.scanner_argv(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        return Run(tool, time.monotonic() - start, -1, [], f"killed after {timeout:.0f} s"), ""
    except BaseException:
        _stop(proc)
        raise
    return Run(tool, time.monotonic() - start, proc.returncode, [], stderr=stderr), stdout


def scan_netscand(lab: Lab, targets: list[str], profile_args: list[str], tool: str) -> Run:
    argv = [sys.executable, "-m", "netscand", "scan", ",".join(targets), *profile_args, "--json"]
    run, stdout = run_timed(lab, tool, argv, NETSCAND_TIMEOUT_S)
    if not run.note:
        try:
            run.devices = json.loads(stdout)["devices"]
        except (ValueError, KeyError, TypeError) as exc:
            run.note = f"bad output: {exc}"
    return run


def scan_nmap(lab: Lab, targets: list[str], ports: list[int], extra: list[str]) -> Run:
    # nmap's defaults otherwise: its own host discovery, timing T3, reverse DNS through the
    # namespace's resolver (the lab's dnsmasq), as netscand's profiled scan does.
    argv = ["nmap", "-sV", "-O", "-p", ",".join(map(str, ports)), *extra, "-oX", "-", *targets]
    run, stdout = run_timed(lab, "nmap", argv, NMAP_TIMEOUT_S)
    if not run.note:
        try:
            run.devices = nmap_devices(ET.fromstring(stdout))
        except ET.ParseError as exc:
            run.note = f"bad XML: {exc}"
    return run


# --- nmap's XML as netscand's devices -------------------------------------------------------------

def nmap_devices(root: ET.Element) -> list[dict[str, Any]]:
    return [_nmap_device(h) for h in root.iter("host")
            if (status := h.find("status")) is not None and status.get("state") == "up"]


def _nmap_device(host: ET.Element) -> dict[str, Any]:
    ip = host.find("address[@addrtype='ipv4']")
    mac = host.find("address[@addrtype='mac']")
    name = host.find("hostnames/hostname[@type='PTR']")
    best = host.find("os/osmatch")  # nmap lists its matches best first
    return {
        "ip": ip.get("addr") if ip is not None else None,
        "mac": mac.get("addr") if mac is not None else None,
        "hostname": name.get("name") if name is not None else None,
        "vendor": mac.get("vendor") if mac is not None else None,
        "os_guess": best.get("name") if best is not None else None,
        "ports": [_nmap_port(p) for p in host.iter("port")],
    }


def _nmap_port(port: ET.Element) -> dict[str, Any]:
    state = port.find("state")
    service = port.find("service")
    svc = service.attrib if service is not None else {}
    return {
        "port": int(port.get("portid", "0")),
        "protocol": port.get("protocol", "tcp"),
        "state": state.get("state") if state is not None else None,
        "service": _nmap_service_name(svc),
        "product": svc.get("product"),
        "version": svc.get("version"),
    }


def _nmap_service_name(svc: dict[str, str]) -> str | None:
    name = svc.get("name")
    if not name:
        return None
    name = NMAP_NAMES.get(name, name)
    if svc.get("tunnel") == "ssl":
        return NMAP_TLS_NAMES.get(name, f"ssl/{name}")
    return name


# --- grading -----------------------------------------------------------------------------------------

def graded(truth: dict[str, Any], run: Run, scanned: set[int], targets: list[str]) -> dict[Key, Grade]:
    """The run's TCP and OS grades, keyed by fact. grade() skips the router when a tool did not
    report it at all; here every fact the truth has for the targets counts, missing ones as unknown."""
    blank = [{"ip": ip, "ports": []} for ip in targets]
    out = {_key(g): g for g in grade(truth, blank, scanned, udp=())}
    out.update({_key(g): g for g in grade(truth, run.devices, scanned, udp=())})
    names = target_names(truth, targets)
    return {key: g for key, g in out.items() if g.host in names}


def target_names(truth: dict[str, Any], targets: list[str]) -> set[str]:
    """The names grade() gives the hosts scanned: a host the tools were not pointed at is not graded."""
    names = {h["name"] for h in truth["hosts"] if h["ip"] in targets}
    return names | ({"router"} if set(truth["router"]["ips"]) & set(targets) else set())


def _key(g: Grade) -> Key:
    return (g.host, g.field, g.where)


def tally(grades: dict[Key, Grade]) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {f: Counter() for f in FIELDS}
    for g in grades.values():
        counts[g.field][g.verdict] += 1
    return counts


def disagreeing(grades: list[dict[Key, Grade]]) -> list[Key]:
    """The facts some tool did not get right."""
    return sorted({k for gs in grades for k, g in gs.items() if g.verdict != OK})


def expected(grades: list[dict[Key, Grade]], key: Key) -> Any:
    return next(gs[key].expected for gs in grades if key in gs)


def pct_ok(c: Counter[str]) -> float:
    total = sum(c.values())
    return 100 * c[OK] / total if total else 0.0


# --- reporting ------------------------------------------------------------------------------------------

def print_table(tools: list[Tool], tallies: list[dict[str, Counter[str]]]) -> None:
    print("\nagreement with the lab's truth (server ports and OS; first run)")
    print(f"{'field':<8}" + "".join(f" | {t.name:<26}" for t in tools))
    print(f"{'':<8}" + " | ok  unk  wrong      % ok  " * len(tools))
    for f in (*FIELDS, "all"):
        cells = []
        for counts in tallies:
            c = sum(counts.values(), Counter()) if f == "all" else counts[f]
            cells.append(f" | {c[OK]:>2} {c[UNKNOWN]:>4} {c[WRONG]:>6} {pct_ok(c):>8.1f}%  ")
        print(f"{f:<8}" + "".join(cells))


def _got(g: Grade | None) -> str:
    if g is None:
        return "(not scanned)"
    return f"{g.got!r} [{g.verdict}]" if g.got is not None else f"- [{g.verdict}]"


def print_disagreements(tools: list[Tool], grades: list[dict[Key, Grade]], ips: dict[str, str]) -> None:
    keys = disagreeing(grades)
    print(f"\nwhere a tool disagrees with the truth ({len(keys)} facts)")
    for key in keys:
        host, fld, where = key
        print(f"  {host} {ips.get(host, '')} {where or '-'} {fld}: expected {expected(grades, key)!r}")
        for tool, gs in zip(tools, grades):
            print(f"      {tool.name:<18} {_got(gs.get(key))}")


def netscand_extras(truth: dict[str, Any], run: Run, targets: list[str]) -> list[Grade]:
    """What nmap's TCP scan was not asked for: UDP services (SNMP), host names, MAC, vendor."""
    udp = [g for g in grade(truth, run.devices) if g.where.startswith("udp/")]
    names = target_names(truth, targets)
    return [g for g in udp + identity_grades(truth, run.devices) if g.host in names]


def extras_by_field(extras: list[Grade]) -> dict[str, Counter[str]]:
    """"udp service", "udp product", "hostname", "mac", ...: verdict counts."""
    out: dict[str, Counter[str]] = {}
    for g in extras:
        out.setdefault(f"udp {g.field}" if g.where else g.field, Counter())[g.verdict] += 1
    return out


def print_extras(extras: list[Grade]) -> None:
    print("\nnetscand only: UDP services and host identity (first run)")
    for name, c in extras_by_field(extras).items():
        print(f"  {name:<12} ok {c[OK]:>2}  unknown {c[UNKNOWN]:>2}  wrong {c[WRONG]:>2}")
    for g in extras:
        if g.verdict != OK:
            print(f"  {g.host} {g.where or '-'} {g.field}: expected {g.expected!r}, got {g.got!r} [{g.verdict}]")


def print_times(tools: list[Tool]) -> None:
    print("\nwall time (s), start-up and reverse DNS included")
    for t in tools:
        walls = ", ".join(f"{r.wall:.2f}" for r in t.runs)
        flags = "; ".join(f"run {i + 1}: exit {r.returncode} {r.note}".strip()
                          for i, r in enumerate(t.runs) if r.failed)
        print(f"  {t.name:<18} median {t.median_wall:7.2f}  runs: {walls}" + (f"  ({flags})" if flags else ""))
    ours, nmap = tools[0], tools[-1]
    print(f"  {ours.name}/{nmap.name}: x{ours.median_wall / nmap.median_wall:.3f} "
          f"({nmap.name}/{ours.name}: x{nmap.median_wall / ours.median_wall:.1f})")


def _counts(c: Counter[str]) -> dict[str, int]:
    return {v: c[v] for v in VERDICTS}


def figures(tools: list[Tool], grades: list[dict[Key, Grade]], extras: list[Grade],
            ports: list[int]) -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "ports": len(ports),
        "tools": {t.name: {"walls": [round(r.wall, 3) for r in t.runs],
                           "median_wall": round(t.median_wall, 3),
                           "failed": [r.failed for r in t.runs],
                           "fields": {f: _counts(c) for f, c in tally(gs).items()}}
                  for t, gs in zip(tools, grades)},
        "wall_ratio": round(tools[0].median_wall / tools[-1].median_wall, 4),
        "disagreements": [{"host": k[0], "field": k[1], "where": k[2],
                           "expected": expected(grades, k),
                           "got": {t.name: gs[k].got if k in gs else None for t, gs in zip(tools, grades)}}
                          for k in disagreeing(grades)],
        "netscand_extras": {name: _counts(c) for name, c in extras_by_field(extras).items()},
    }


def target_met(tools: list[Tool], tallies: list[dict[str, Counter[str]]]) -> bool:
    """netscand (first column) at least as right as nmap (last) on every field, and faster."""
    ours, nmap = tallies[0], tallies[-1]
    accurate = all(ours[f][OK] >= nmap[f][OK] for f in FIELDS)
    return accurate and tools[0].median_wall < tools[-1].median_wall


# --- main --------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=8, help="imitation hosts besides the servers (default 8)")
    p.add_argument("--seed", type=int, default=1, help="lab seed (default 1)")
    p.add_argument("--runs", type=int, default=1, help="repeat every scan this many times (timing)")
    p.add_argument("--normal", action="store_true",
                   help="also time netscand's plain --profile normal (top 1000 only: no 6379)")
    p.add_argument("--nmap-args", default="", metavar="ARGS",
                   help='extra nmap options, e.g. --nmap-args="-T4 --max-retries 1" '
                        "(default: none, nmap's own defaults)")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    p.add_argument("--server", metavar="NAME", help="scan only this server host (s1-s4), on its own ports")
    args = parse_bench_args(p, SMOKE, argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def _score(truth: dict[str, Any], tool: Tool, targets: list[str]) -> str:
    verdicts = Counter(g.verdict for g in graded(truth, tool.runs[-1], tool.scanned, targets).values())
    return f"{verdicts[OK]}/{verdicts.total()} right"


def scan_all(lab: Lab, args: argparse.Namespace, targets: list[str], ports: list[int]) -> list[Tool]:
    listed = set(ports)
    custom = ["--profile", "custom", "--ports", ",".join(map(str, ports)), "--profiling"]
    tools = [Tool("netscand", listed)]
    if args.normal:
        tools.append(Tool("netscand normal", set(top_ports(1000))))
    tools.append(Tool("nmap", listed))
    for i in range(args.runs):
        tools[0].runs.append(scan_netscand(lab, targets, custom, "netscand"))
        if args.normal:
            tools[1].runs.append(scan_netscand(lab, targets, ["--profile", "normal"], "netscand normal"))
        tools[-1].runs.append(scan_nmap(lab, targets, ports, shlex.split(args.nmap_args)))
        # Every run's score, so a flaky answer shows even though the tables are the first run's.
        print(f"run {i + 1}: " + ", ".join(f"{t.name} {t.runs[-1].wall:.2f} s, {_score(lab.truth, t, targets)}"
                                           for t in tools))
    return tools


def report(truth: dict[str, Any], args: argparse.Namespace, tools: list[Tool], targets: list[str],
           ports: list[int]) -> bool:
    """Prints the figures; True when both tools ran and netscand met its target."""
    grades = [graded(truth, t.runs[0], t.scanned, targets) for t in tools]
    tallies = [tally(g) for g in grades]
    print_table(tools, tallies)
    ips = {h["name"]: h["ip"] for h in truth["hosts"]} | {"router": "/".join(truth["router"]["ips"])}
    print_disagreements(tools, grades, ips)
    extras = netscand_extras(truth, tools[0].runs[0], targets)
    print_extras(extras)
    print_times(tools)
    for t in tools:
        for r in t.runs:
            if r.failed and r.stderr.strip():
                print(f"  {t.name} stderr: " + r.stderr.strip()[-600:].replace("\n", "\n    "))
    if args.json:
        print(json.dumps(figures(tools, grades, extras, ports), indent=1))
    return not any(r.failed for t in tools for r in t.runs) and target_met(tools, tallies)


def main() -> int:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress when piped
    unwind_on_sigterm()
    try:
        lab = Lab.up(hosts=args.hosts, servers=True, seed=args.seed, prefix=PREFIX)
    except LabError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    try:
        targets, ports = lab_targets(lab, args.server), port_list(lab.truth, args.server)
        servers = [h["name"] for h in lab.truth["hosts"] if h["kind"] == "server"]
        port_scope = f"{args.server}'s own and {CLOSED_PORT}" if args.server else "top 1000 + servers'"
        print(f"lab {PREFIX}: {len(targets)} targets ({len(servers)} servers: {', '.join(servers)}; "
              f"router {', '.join(lab.truth['router']['ips'])}), seed {args.seed}; {len(ports)} TCP ports "
              f"({port_scope}); "
              f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
        print("nmap: " + shlex.join(["nmap", "-sV", "-O", "-p", "LIST", *shlex.split(args.nmap_args),
                                     "-oX", "-", "TARGETS"]))
        tools = scan_all(lab, args, targets, ports)
    finally:
        lab.down()
    ok = report(lab.truth, args, tools, targets, ports)
    print_bench_footer()
    if args.smoke:  # one server at nmap -T5: the figures show the bench runs, not how the tools compare
        return 0 if not any(r.failed for t in tools for r in t.runs) else 1
    return 0 if ok else 1


if __name__ == "__main__":
    bench_exit(main)
