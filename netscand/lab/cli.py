"""`netscand lab up|down|status`: the lab from the command line (needs root)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from netscand.lab.errors import LabError
from netscand.lab.hostile import is_hostile
from netscand.lab.lab import DEFAULT_STATE_DIR, Lab, status, teardown
from netscand.lab.truth import state_file


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "lab", help="build, show or tear down the network-namespace test lab (root)",
        description="Network-namespace lab for tests, benchmarks and demos. "
                    "'status' exits 1 when no lab with the prefix is up.")
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--hosts", type=int, default=8, metavar="N", help="number of hosts (default 8)")
    parser.add_argument("--loss", type=float, default=0.0, metavar="PCT",
                        help="random loss on the scanner's link, each direction (default 0)")
    parser.add_argument("--delay", type=int, default=0, metavar="MS",
                        help="one-way delay on the scanner's link (default 0)")
    parser.add_argument("--seed", type=int, default=1, metavar="S", help="seed for hosts and ports (default 1)")
    parser.add_argument("--servers", action="store_true",
                        help="add hosts running real daemons (sshd, nginx, vsftpd, redis, mariadb, snmpd)")
    parser.add_argument("--hostile", action="store_true",
                        help="add hosts that misbehave on purpose: a tarpit sending the scanner malformed "
                             "frames, and services that drip, never end, loop or lie")
    parser.add_argument("--detectors", action="store_true",
                        help="run Debian's scanlogd and psad on every lab host (their logs in the state dir; "
                             "sets net.netfilter.nf_log_all_netns until the lab is down)")
    parser.add_argument("--wide-routed", action="store_true",
                        help="route all of 198.19.0.0/16 to the lab router, which drops what is outside its "
                             "198.19.0.0/24: a routed /16 with few live hosts, for discovery")
    parser.add_argument("--prefix", default="nsd", metavar="P", help="namespace name prefix (default nsd)")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, metavar="DIR",
                        help=f"where the ground truth is written (default {DEFAULT_STATE_DIR})")
    parser.set_defaults(func=run)


def _summary(truth: dict[str, Any]) -> str:
    hosts = truth["hosts"]
    routed = sum(h["routed"] for h in hosts)
    hostile = sum(map(is_hostile, hosts))
    return (f"lab {truth['prefix']}: {len(hosts)} hosts ({routed} routed"
            f"{f', {hostile} hostile' if hostile else ''}), "
            f"{sum(len(h['open']) for h in hosts)} open ports, "
            f"{sum(len(h['filtered']) for h in hosts)} filtered, "
            f"loss {truth['loss_pct']}%, delay {truth['delay_ms']} ms"
            f"{', routed /16' if truth.get('wide_routed') else ''}\n"
            f"scanner: netns {truth['scanner']['netns']}, {truth['scanner']['ifname']} {truth['scanner']['ip']}"
            f"{_detectors_line(truth)}")


def _detectors_line(truth: dict[str, Any]) -> str:
    watching = truth.get("detectors")
    if not isinstance(watching, dict):
        return ""
    return f"\ndetectors: scanlogd and psad on {len(watching['hosts'])} hosts ({', '.join(watching['hosts'])})"


def _host_lines(truth: dict[str, Any]) -> str:
    return "\n".join(
        f"  {h['name']:<4} {h['ip']:<13} {h['mac']} ttl {h['ttl']:<3} "
        f"{'routed ' if h['routed'] else ''}"
        f"open {'every port (tarpit)' if h.get('tarpit') else ','.join(map(str, h['open']))} "
        f"filtered {','.join(map(str, h['filtered']))}{' hostile' if is_hostile(h) else ''}"
        for h in truth["hosts"])


def _act(args: argparse.Namespace) -> int:
    if args.action == "up":
        lab = Lab.up(hosts=args.hosts, loss_pct=args.loss, delay_ms=args.delay, seed=args.seed,
                     prefix=args.prefix, state_dir=args.state_dir, servers=args.servers, hostile=args.hostile,
                     detectors=args.detectors, wide_routed=args.wide_routed)
        print(f"{_summary(lab.truth)}\nstate file: {lab.state_file}")
        return 0
    if args.action == "down":
        teardown(args.prefix, args.state_dir)
        print(f"lab {args.prefix} down")
        return 0
    truth = status(args.prefix, args.state_dir)
    if truth is None:
        print("no lab")
        return 1
    print(f"{_summary(truth)}\nstate file: {state_file(args.state_dir, args.prefix)}\n{_host_lines(truth)}")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return _act(args)
    except LabError as exc:
        print(f"netscand lab: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("netscand lab: interrupted", file=sys.stderr)
    except Exception as exc:  # a one-line message, never a traceback, even for the unexpected
        print(f"netscand lab: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1
