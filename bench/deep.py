"""The deep profile against nmap: netscand `--profile deep` and `nmap -sS -sU -sV` on the lab's servers.

    python bench/deep.py [--seed 1] [--server NAME] [--nmap-args=ARGS] [--json]
    python bench/deep.py --smoke   # one server, nmap with short timeouts: judged on running

Builds a lab with the server hosts (real sshd, nginx, vsftpd, redis, mariadb, snmpd and the UDP
daemons; dnsmasq on the router) and scans the servers and the router, once each, with both tools
on the same ports: every TCP port and the deep profile's UDP list (netscand.scan.ports.
deep_udp_ports()). Prints wall times, TCP recall, UDP recall, the state each tool gave each
probed UDP port against the truth, and service, product and version accuracy per tool
(netscand.lab.grade: the same rules for both), then whether netscand met the issue's goal:
nmap's UDP accuracy or better in a tenth of its time.

Exit status: 0 when the goal is met; 1 when a tool failed or it is not (with --smoke, only when a
tool failed); 2 if the lab could not be built. Both tools run only inside the lab's scanner
namespace, which has no route out of the lab.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from typing import Any

from profiling import Run, nmap_devices, run_timed, scan_netscand

from netscand.lab import Lab, LabError
from netscand.lab.grade import (
    OK,
    UNCONFIRMED,
    UNKNOWN,
    WRONG,
    Grade,
    expected_udp_states,
    grade,
    udp_listening,
    udp_state_grades,
)
from netscand.lab.harness import (
    bench_exit,
    in_lab,
    parse_bench_args,
    print_bench_footer,
    unwind_on_sigterm,
)
from netscand.scan.ports import deep_udp_ports

PREFIX = "nsk"  # not nst/nsl/nsh (tests), nsb/nsp/nsa/nsw/nsf (the other benches)
TCP_PORTS = "1-65535"
NMAP_TIMEOUT_S = 1500  # the run must end well inside 30 minutes, whatever nmap does
# nmap's service names where the truth (and netscand) use another for the same protocol; its
# "upnp" on TCP (miniupnpd's HTTP on 5000) is graded as it is written.
NMAP_NAMES = {("tcp", "memcache"): "memcached", ("udp", "memcache"): "memcached", ("udp", "upnp"): "ssdp"}
# One server, nmap at -T5 without retries and the lightest -sV: nmap takes about 20 s instead of
# minutes, calling most UDP ports open|filtered (it no longer waits out the ICMP rate limit).
SMOKE = {"server": "s4", "nmap_args": "-T5 --max-retries 0 --version-intensity 0"}
FIELDS = ("service", "product", "version")

States = dict[str, dict[int, str]]  # address -> UDP port -> state


@dataclass
class Outcome:
    """One tool's run, read: its devices (netscand's shape) and the UDP state of each probed port."""
    run: Run
    udp_states: States


# --- targets -----------------------------------------------------------------------------------

def targets(lab: Lab, server: str | None) -> list[str]:
    """The server hosts and the router once (its two addresses share one ICMP rate limit, so
    scanning both would only double nmap's UDP time); or only the server named."""
    servers = [h["ip"] for h in lab.truth["hosts"] if h["kind"] == "server" and server in (None, h["name"])]
    if not servers:
        raise LabError(f"no server {server!r} in the lab")
    return in_lab(servers if server else [*servers, lab.truth["router"]["ips"][0]])


def nmap_argv(udp: list[int], extra: list[str], ips: list[str]) -> list[str]:
    ports = f"T:{TCP_PORTS},U:{','.join(map(str, udp))}"
    return ["nmap", "-sS", "-sU", "-sV", "-p", ports, *extra, "-oX", "-", *ips]


# --- netscand ------------------------------------------------------------------------------------

def run_netscand(lab: Lab, ips: list[str], udp: list[int]) -> Outcome:
    run = scan_netscand(lab, ips, ["--profile", "deep"], "netscand")
    hosts = lab_hosts(lab.truth)
    return Outcome(run, {d["ip"]: netscand_udp_states(d, udp, expected_udp_states(hosts.get(d["ip"], {})))
                         for d in run.devices})


def lab_hosts(truth: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each lab host's truth by address, the router's by both of its."""
    return {h["ip"]: h for h in truth["hosts"]} | dict.fromkeys(truth["router"]["ips"], truth["router"])


def netscand_udp_states(device: dict[str, Any], probed: list[int], expected: dict[int, str]) -> dict[int, str]:
    """The listed UDP ports' states, and the unlisted ports' from the counts in `not_shown_udp`.
    Counts do not say which port is in which state: a counted state goes first to the ports the
    truth (`expected`, closed where absent) has in it, so a count is graded right as far as the
    truth has that many ports in its state, and only its excess is graded against other ports."""
    listed = {p["port"]: p["state"] for p in device["ports"] if p["protocol"] == "udp"}
    left = dict(device.get("not_shown_udp", {}))
    counted: dict[int, str] = {}
    for port in sorted(set(probed) - listed.keys()):
        want = expected.get(port, "closed")
        if left.get(want, 0) > 0:
            counted[port], left[want] = want, left[want] - 1
    rest = iter(sorted(set(probed) - listed.keys() - counted.keys()))
    for state, count in sorted(left.items()):
        counted.update((port, state) for _, port in zip(range(count), rest))
    return listed | counted


# --- nmap --------------------------------------------------------------------------------------------

def run_nmap(lab: Lab, argv: list[str]) -> Outcome:
    run, stdout = run_timed(lab, "nmap", argv, NMAP_TIMEOUT_S)
    if run.note:
        return Outcome(run, {})
    try:
        root = ET.fromstring(stdout)
    except ET.ParseError as exc:
        run.note = f"bad XML: {exc}"
        return Outcome(run, {})
    run.devices = [_nmap_names(d) for d in nmap_devices(root)]
    return Outcome(run, nmap_udp_states(root))


def _nmap_names(device: dict[str, Any]) -> dict[str, Any]:
    for port in device["ports"]:
        port["service"] = NMAP_NAMES.get((port["protocol"], port["service"]), port["service"])
    return device


def nmap_udp_states(root: ET.Element) -> States:
    """Every UDP port nmap has a state for: those it lists, and those its `extraports` count,
    which nmap 7.80+ names in `extrareasons ports="..."`."""
    out: States = {}
    for host in root.iter("host"):
        addr = host.find("address[@addrtype='ipv4']")
        if addr is None:
            continue
        states = out.setdefault(addr.get("addr", ""), {})
        for port in host.iter("port"):
            state = port.find("state")
            if port.get("protocol") == "udp" and state is not None:
                states[int(port.get("portid", "0"))] = state.get("state", "")
        for extra in host.iter("extraports"):
            for reason in extra.iter("extrareasons"):
                if reason.get("proto") == "udp":
                    states.update(dict.fromkeys(port_range(reason.get("ports", "")), extra.get("state", "")))
    return out


def port_range(text: str) -> list[int]:
    """"1-3,7" -> [1, 2, 3, 7], as nmap writes port lists."""
    ports: list[int] = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        ports += range(int(first), int(last or first) + 1)
    return ports


# --- grading -------------------------------------------------------------------------------------------

def open_found(devices: list[dict[str, Any]], proto: str) -> set[tuple[str, int]]:
    return {(d["ip"], p["port"]) for d in devices for p in d["ports"]
            if p["protocol"] == proto and p["state"] == "open"}


def truth_open(truth: dict[str, Any], ips: list[str], proto: str) -> set[tuple[str, int]]:
    """The truth's open ports of the hosts at `ips`: TCP from `open`, UDP where something listens."""
    router = truth["router"]
    hosts = [(h["ip"], h) for h in truth["hosts"] if h["ip"] in ips]
    hosts += [(ip, router) for ip in router["ips"] if ip in ips]
    if proto == "tcp":
        return {(ip, int(p)) for ip, h in hosts for p in h["open"]}
    return {(ip, p) for ip, h in hosts for p in udp_listening(h)}


@dataclass
class Score:
    """One tool's figures against the truth."""
    tcp: tuple[int, int, int]  # found, of the truth's, false positives
    udp: tuple[int, int, int]
    states: Counter[str]  # verdict -> UDP ports
    fields: dict[str, Counter[str]]  # "tcp service", "udp version", ... -> verdict -> facts
    wrong: list[Grade]  # every fact not right, to list


def score(truth: dict[str, Any], outcome: Outcome, ips: list[str], udp: list[int]) -> Score:
    devices = outcome.run.devices
    recall = {}
    for proto in ("tcp", "udp"):
        want, got = truth_open(truth, ips, proto), open_found(devices, proto)
        recall[proto] = (len(want & got), len(want), len(got - want))
    states = udp_state_grades(truth, outcome.udp_states, udp, ips)
    facts = service_grades(truth, devices, ips, udp)
    fields: dict[str, Counter[str]] = {}
    for g in facts:
        fields.setdefault(f"{g.where.split('/')[0]} {g.field}", Counter())[g.verdict] += 1
    return Score(recall["tcp"], recall["udp"], Counter(g.verdict for g in states), fields,
                 [g for g in facts + states if g.verdict != OK])


def service_grades(truth: dict[str, Any], devices: list[dict[str, Any]], ips: list[str],
                   udp: list[int]) -> list[Grade]:
    """Service, product and version of every server port of the targets, TCP and UDP; a port
    or host a tool did not report at all counts as unknown."""
    reported = {d["ip"]: d for d in devices}
    graded = grade(truth, [reported.get(ip, {"ip": ip, "ports": []}) for ip in ips], udp=udp)
    names = {h["name"] for h in truth["hosts"] if h["ip"] in ips}
    names |= {"router"} if set(truth["router"]["ips"]) & set(ips) else set()
    return [g for g in graded if g.field in FIELDS and g.host in names]


# --- reporting ---------------------------------------------------------------------------------------

def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:5.1f}%" if whole else "    -"


def table_rows(s: Score, wall: float, fields: list[str]) -> list[str]:
    states = s.states
    probed = sum(states.values())
    rows = [f"{wall:.1f} s", f"{pct(s.tcp[0], s.tcp[1])} ({s.tcp[0]}/{s.tcp[1]}, FP {s.tcp[2]})",
            f"{pct(s.udp[0], s.udp[1])} ({s.udp[0]}/{s.udp[1]}, FP {s.udp[2]})",
            f"{pct(states[OK], probed)} ({states[OK]}/{probed})"]
    rows += [f"{states[v]}" for v in (UNCONFIRMED, WRONG, UNKNOWN)]
    for name in fields:
        c = s.fields.get(name, Counter())
        rows.append(f"{pct(c[OK], c.total())} ({c[OK]}/{c.total()}, wrong {c[WRONG]})")
    return rows


def field_names(scores: list[Score]) -> list[str]:
    return sorted({name for s in scores for name in s.fields}, key=lambda n: (n.split()[0], FIELDS.index(n.split()[1])))


def print_table(names: list[str], scores: list[Score], walls: list[float]) -> None:
    fields = field_names(scores)
    labels = ["wall time", "TCP recall", "UDP recall", "UDP states right", "  unconfirmed (open|filtered)",
              "  wrong", "  not reported", *(f"{n} right" for n in fields)]
    columns = [table_rows(s, w, fields) for s, w in zip(scores, walls)]
    print(f"\n{'':<30}" + "".join(f" | {n:<24}" for n in names))
    for i, label in enumerate(labels):
        print(f"{label:<30}" + "".join(f" | {c[i]:<24}" for c in columns))


def print_wrong(names: list[str], scores: list[Score]) -> None:
    for name, s in zip(names, scores):
        print(f"\n{name}: facts not right ({len(s.wrong)})")
        shown = Counter[tuple[str, Any, Any]]()
        for g in s.wrong:  # closed ports reported alike are summed, not listed one by one
            if g.field == "state" and g.expected == "closed":
                shown[(g.host, g.expected, g.got)] += 1
            else:
                print(f"  {g.host} {g.where} {g.field}: expected {g.expected!r}, got {g.got!r} [{g.verdict}]")
        for (host, want, got), n in sorted(shown.items(), key=str):
            print(f"  {host} udp state: expected {want!r}, got {got!r}: {n} ports")


def goal(ours: Score, nmap: Score, walls: list[float]) -> tuple[bool, str]:
    """nmap's UDP accuracy or better (recall, states right, UDP service facts right) in a
    tenth of its time."""
    udp_facts = [n for n in field_names([ours, nmap]) if n.startswith("udp ")]
    accurate = (ours.udp[0] >= nmap.udp[0] and ours.states[OK] >= nmap.states[OK]
                and all(ours.fields.get(n, Counter())[OK] >= nmap.fields.get(n, Counter())[OK] for n in udp_facts))
    fast = walls[0] * 10 <= walls[1]
    return accurate and fast, (f"UDP accuracy {'at least' if accurate else 'below'} nmap's, "
                               f"time x{walls[0] / walls[1]:.3f} of nmap's ({'within' if fast else 'over'} x0.1)")


def figures(names: list[str], scores: list[Score], walls: list[float], met: bool) -> dict[str, Any]:
    return {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "goal_met": met,
            "wall_ratio": round(walls[0] / walls[1], 4),
            "tools": {n: {"wall": round(w, 2), "tcp": s.tcp, "udp": s.udp, "udp_states": dict(s.states),
                          "fields": {f: dict(c) for f, c in s.fields.items()}}
                      for n, s, w in zip(names, scores, walls)}}


def report(truth: dict[str, Any], args: argparse.Namespace, outcomes: list[Outcome], ips: list[str],
           udp: list[int]) -> bool:
    """Prints the figures; True when both tools ran and netscand met the goal."""
    names = ["netscand deep", "nmap"]
    scores = [score(truth, o, ips, udp) for o in outcomes]
    walls = [o.run.wall for o in outcomes]
    print_table(names, scores, walls)
    print_wrong(names, scores)
    failed = [o.run for o in outcomes if o.run.failed]
    for run in failed:
        print(f"\n{run.tool} failed: exit {run.returncode} {run.note}\n  " + run.stderr.strip()[-600:])
    met, why = goal(scores[0], scores[1], walls)
    print(f"\ntime: netscand/nmap x{walls[0] / walls[1]:.3f} (nmap/netscand x{walls[1] / walls[0]:.1f})")
    print(f"goal (nmap's UDP accuracy or better in a tenth of its time): {'met' if met else 'NOT met'}: {why}")
    if args.json:
        print(json.dumps(figures(names, scores, walls, met), indent=1))
    return not failed and met


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1, help="lab seed (default 1)")
    p.add_argument("--server", metavar="NAME", help="scan only this server (s1-s4)")
    p.add_argument("--nmap-args", default="", metavar="ARGS",
                   help='extra nmap options, e.g. --nmap-args="-T4" (default: none, nmap\'s own defaults)')
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    return parse_bench_args(p, SMOKE, argv)


def scan_both(lab: Lab, args: argparse.Namespace) -> tuple[list[Outcome], list[str], list[int]]:
    ips, udp = targets(lab, args.server), list(deep_udp_ports())
    nmap = nmap_argv(udp, shlex.split(args.nmap_args), ips)
    print(f"lab {PREFIX}: targets {', '.join(ips)}; TCP {TCP_PORTS}, {len(udp)} UDP ports; seed {args.seed}; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print("netscand: " + shlex.join(["netscand", "scan", ",".join(ips), "--profile", "deep", "--json"]))
    ours = run_netscand(lab, ips, udp)
    print(f"netscand deep: {ours.run.wall:.1f} s, exit {ours.run.returncode}")
    print("nmap: " + shlex.join(nmap))
    theirs = run_nmap(lab, nmap)
    print(f"nmap: {theirs.run.wall:.1f} s, exit {theirs.run.returncode}")
    return [ours, theirs], ips, udp


def main() -> int:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress when piped
    unwind_on_sigterm()
    try:
        lab = Lab.up(hosts=1, servers=True, seed=args.seed, prefix=PREFIX)
    except LabError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    try:
        outcomes, ips, udp = scan_both(lab, args)
    finally:
        lab.down()
    ok = report(lab.truth, args, outcomes, ips, udp)
    print_bench_footer()
    if args.smoke:  # one server at nmap -T5: the figures show the bench runs, not how the tools compare
        return 0 if not any(o.run.failed for o in outcomes) else 1
    return 0 if ok else 1


if __name__ == "__main__":
    bench_exit(main)
