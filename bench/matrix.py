"""`bench/engine.py --matrix`: netscand at its defaults against nmap and masscan, cell by cell.

Cells: ports 1-1024 and 1-65535 on every lab host x {clean, 5 % loss, 20 ms delay}, and a
routed /16 (198.19.0.0/16, live only in the router's /24, the rest blackholed: topology.py) x
ports 1-1024, where each tool pays for its own host discovery. Per cell and tool: wall time,
recall, frames sent, CPU seconds (and per million planned probes), peak RSS; per cell, the
ratios of netscand to the faster peer and to nmap, marked against issue 14's goals.

Each tool runs as a user would type it: netscand `scan TARGETS --ports P --json` and nothing
else (row `netscand`, the one-shot, its start-up included), and the same request POSTed to a
`netscand serve` already running at its defaults (row `netscand-daemon`, served.py: the
product's figure, its start-up paid once per installation, not per scan); nmap `-sS -n -T4 --max-retries 2` (+ `-Pn` on the port cells, its own discovery on the
/16); masscan `--rate 10000000`. Every run is cut at --cap seconds, its recall read from what
it had reported by then.
"""

from __future__ import annotations

import argparse
import fnmatch
import ipaddress
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runners import NMAP_ARGS, Result, Targets, scan_masscan, scan_netscand, scan_nmap
from served import TOOL as DAEMON
from served import scan_daemon

from netscand.lab import Lab
from netscand.lab.harness import all_hosts
from netscand.lab.truth import WIDE_ROUTED_NET

ONESHOT = "netscand"
TOOLS = (ONESHOT, DAEMON, "nmap", "masscan")
OURS = (DAEMON, ONESHOT)  # the row the goals judge first: the daemon is the product
MASSCAN_RATE = 10_000_000  # issue 14's table: masscan as fast as it will go
LOSS_PCT = 5.0
DELAY_MS = 20
LOW, FULL = range(1, 1025), range(1, 65536)
RECALL_GOAL, LOSSY_RECALL_GOAL = 1.0, 0.999
WALL_GOAL = 0.5  # netscand / the faster peer, on full-range cells
MIB = 1024


@dataclass(frozen=True)
class Cell:
    name: str
    ports: range
    loss_pct: float = 0.0
    delay_ms: int = 0
    wide: bool = False  # the routed /16 with its own discovery, instead of the lab's hosts

    @property
    def recall_goal(self) -> float:
        return LOSSY_RECALL_GOAL if self.loss_pct else RECALL_GOAL


CELLS = tuple(
    Cell(f"p{ports.stop - 1}-{label}", ports, loss, delay)
    for ports in (LOW, FULL)
    for label, loss, delay in (("clean", 0.0, 0), (f"loss{LOSS_PCT:g}", LOSS_PCT, 0), (f"delay{DELAY_MS}", 0.0, DELAY_MS))
) + (Cell("routed16", LOW, wide=True),)


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--matrix", action="store_true",
                   help="every cell x netscand (one-shot and daemon), nmap, masscan at defaults")
    p.add_argument("--cells", default="*", help=f"with --matrix: cells to run, comma-separated names or globs "
                                                f"({', '.join(c.name for c in CELLS)}; default all)")
    p.add_argument("--tools", default=",".join(TOOLS), help=f"with --matrix: tools to run (default all: {','.join(TOOLS)})")
    p.add_argument("--cap", type=float, default=300, help="with --matrix: seconds any one run may take (300)")
    p.add_argument("--wide-prefixlen", type=int, default=16,
                   help="with --matrix: the routed cell scans 198.19.0.0/N (default 16)")
    p.add_argument("--json", type=Path, metavar="FILE", help="with --matrix: write every figure to FILE")


def chosen(args: argparse.Namespace) -> tuple[list[Cell], list[str]]:
    """The cells and tools asked for; ValueError naming what matches nothing."""
    patterns = [p.strip() for p in args.cells.split(",") if p.strip()]
    cells = [c for c in CELLS if any(fnmatch.fnmatch(c.name, p) for p in patterns)]
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [p for p in patterns if not any(fnmatch.fnmatch(c.name, p) for c in CELLS)]
    unknown += [t for t in tools if t not in TOOLS]
    if unknown or not cells or not tools:
        raise ValueError(f"no such cell or tool: {', '.join(unknown) or 'none chosen'}")
    if not 16 <= args.wide_prefixlen <= 24:
        raise ValueError("--wide-prefixlen must be 16-24")
    return cells, tools


# --- running the cells -------------------------------------------------------------------

def _labs(cells: list[Cell], args: argparse.Namespace, prefix: str) -> Iterator[tuple[Lab, list[Cell]]]:
    """One lab per delay (the relay is built with the lab), its cells clean first: loss is
    switched on the built lab. Each lab also routes the /16; it is down before the next."""
    for delay in sorted({c.delay_ms for c in cells}):
        lab = Lab.up(hosts=args.hosts, delay_ms=delay, seed=args.seed, prefix=prefix, wide_routed=True)
        try:
            yield lab, sorted((c for c in cells if c.delay_ms == delay), key=lambda c: c.loss_pct)
        finally:
            lab.down()


def _targets(lab: Lab, cell: Cell, prefixlen: int) -> Targets:
    if cell.wide:
        first = next(ipaddress.IPv4Network(WIDE_ROUTED_NET).subnets(new_prefix=prefixlen))
        return Targets((str(first),), cell.ports)
    return Targets.hosts(all_hosts(lab), cell.ports)


def _run_tool(tool: str, lab: Lab, cell: Cell, targets: Targets, cap: float, cwd: str) -> Result:
    if tool == ONESHOT:
        return scan_netscand(lab, targets, cap, cwd)
    if tool == DAEMON:
        return scan_daemon(lab, targets, cap)
    if tool == "nmap":
        return scan_nmap(lab, targets, cap, cwd, discovery=cell.wide)
    return scan_masscan(lab, targets, MASSCAN_RATE, cap, cwd)


def run(args: argparse.Namespace, prefix: str) -> list[tuple[Cell, Result]]:
    cells, tools = chosen(args)
    done: list[tuple[Cell, Result]] = []
    with tempfile.TemporaryDirectory(prefix="bench-matrix-") as cwd:  # masscan's paused.conf
        for lab, lab_cells in _labs(cells, args, prefix):
            for cell in lab_cells:
                if lab.truth["loss_pct"] != cell.loss_pct:
                    lab.set_loss(cell.loss_pct)
                targets = _targets(lab, cell, args.wide_prefixlen)
                for tool in tools:
                    done.append((cell, _run_tool(tool, lab, cell, targets, args.cap, cwd)))
                    print(row(cell, done[-1][1]))
    return done


# --- the figures ---------------------------------------------------------------------------

def cpu_per_m(res: Result) -> float:
    """CPU seconds per million planned probes (addresses x ports), the issue's measure."""
    return res.run.cpu / res.planned * 1e6


HEAD = (f"{'cell':<14} {'tool':<15} {'wall s':>8} {'recall':>8} {'FP':>3} {'tx frames':>12} {'CPU s':>7} "
        f"{'CPU s/M':>8} {'RSS MiB':>8} {'Pss MiB':>8} {'rc':>4}  note")


def row(cell: Cell, res: Result) -> str:
    r = res.run
    wall = f"{'>' if r.timed_out else ''}{r.wall:.2f}"
    return (f"{cell.name:<14} {res.tool:<15} {wall:>8} {res.recall:>8.2%} {len(res.false_pos):>3} {r.tx:>12,} "
            f"{r.cpu:>7.2f} {cpu_per_m(res):>8.2f} {r.hwm_sum_kb / MIB:>8.1f} {r.pss_sum_kb / MIB:>8.1f} "
            f"{r.returncode:>4}  {res.note}")


@dataclass(frozen=True)
class Verdict:
    """netscand's figures in one cell against its peers and issue 14's goals (None: not judged).
    Wall and CPU are judged on one row, `judged` (the daemon's if it ran: the product's figure);
    the one-shot's ratios are kept beside it. Recall is judged on every netscand row."""
    cell: Cell
    judged: str | None
    recall_ok: bool | None
    wall_ratio: float | None  # the judged row / the faster peer
    wall_ok: bool | None  # judged on full-range cells only
    cpu_ratio: float | None  # the judged row / nmap, CPU per planned probe
    cpu_ok: bool | None
    oneshot_wall_ratio: float | None
    oneshot_cpu_ratio: float | None


def _ratios(ours: Result | None, peers: list[Result], nmap: Result | None) -> tuple[float | None, float | None]:
    """(wall / the faster peer's, CPU per probe / nmap's) of one netscand row."""
    if ours is None:
        return None, None
    wall = ours.run.wall / min(r.run.wall for r in peers) if peers else None
    cpu = cpu_per_m(ours) / cpu_per_m(nmap) if nmap and nmap.run.cpu > 0 else None
    return wall, cpu


def verdict(cell: Cell, results: list[Result]) -> Verdict:
    by_tool = {r.tool: r for r in results}
    judged = next((t for t in OURS if t in by_tool), None)
    # A peer that failed is no faster peer; one cut at the cap counts with the cap.
    peers = [r for r in results if r.tool not in OURS and (r.run.returncode == 0 or r.run.timed_out)]
    ours = [r for r in results if r.tool in OURS]
    recall_ok = all(not r.run.timed_out and r.recall >= cell.recall_goal for r in ours) if ours else None
    wall_ratio, cpu_ratio = _ratios(by_tool.get(judged or ""), peers, by_tool.get("nmap"))
    oneshot_wall, oneshot_cpu = _ratios(by_tool.get(ONESHOT), peers, by_tool.get("nmap"))
    wall_ok = (wall_ratio <= WALL_GOAL) if wall_ratio is not None and cell.ports == FULL else None
    return Verdict(cell, judged, recall_ok, wall_ratio, wall_ok, cpu_ratio,
                   None if cpu_ratio is None else cpu_ratio <= 1, oneshot_wall, oneshot_cpu)


def _mark(ok: bool | None) -> str:
    return "-" if ok is None else "met" if ok else "NOT met"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"x{value:.2f}"


def verdicts(done: list[tuple[Cell, Result]]) -> list[Verdict]:
    cells = list(dict.fromkeys(cell for cell, _ in done))
    return [verdict(cell, [r for c, r in done if c == cell]) for cell in cells]


GOALS_HEAD = (f"{'cell':<14} {'judged on':<15} {'recall goal':>12} {'wall/faster peer':>17} {'wall goal':>10} "
              f"{'CPU/probe vs nmap':>18} {'CPU goal':>9} {'one-shot wall':>14} {'one-shot CPU':>13}")


def goals_row(v: Verdict) -> str:
    return (f"{v.cell.name:<14} {v.judged or '-':<15} {_mark(v.recall_ok):>12} {_ratio(v.wall_ratio):>17} "
            f"{_mark(v.wall_ok):>10} {_ratio(v.cpu_ratio):>18} {_mark(v.cpu_ok):>9} "
            f"{_ratio(v.oneshot_wall_ratio):>14} {_ratio(v.oneshot_cpu_ratio):>13}")


def report(done: list[tuple[Cell, Result]], args: argparse.Namespace) -> list[Verdict]:
    print("\n" + HEAD + "\n" + "-" * len(HEAD))
    for cell, res in done:
        print(row(cell, res))
    found = verdicts(done)
    print(f"\ngoals for netscand at its defaults: recall 100 % (>= {LOSSY_RECALL_GOAL:.1%} at {LOSS_PCT:g} % loss) "
          f"in every netscand row; wall time <= {WALL_GOAL}x the faster peer on full-range cells and CPU per "
          f"probe <= nmap's, judged on {DAEMON} (the product: a request to the running daemon), the "
          f"one-shot's ratios beside")
    print(GOALS_HEAD + "\n" + "-" * len(GOALS_HEAD))
    for v in found:
        print(goals_row(v))
    print(f"\nnmap: {' '.join(NMAP_ARGS)} (-Pn on port cells; its own discovery on routed16); masscan: --rate "
          f"{MASSCAN_RATE}; netscand: scan TARGETS --ports P --json; {DAEMON}: the same request to `netscand "
          f"serve` at its defaults, ready before the clock starts. Runs cut at {args.cap:g} s ('>' before "
          f"the wall time). CPU s/M: CPU seconds of the tool's process tree per million planned probes.")
    return found


def write_json(path: Path, done: list[tuple[Cell, Result]], found: list[Verdict], args: argparse.Namespace) -> None:
    runs: list[dict[str, Any]] = [{
        "cell": cell.name, "tool": res.tool, "targets": list(res.targets.specs), "ports": res.targets.port_spec,
        "loss_pct": cell.loss_pct, "delay_ms": cell.delay_ms, "planned": res.planned,
        "wall_s": res.run.wall, "timed_out": res.run.timed_out, "returncode": res.run.returncode,
        "recall": res.recall, "open_found": len(res.found & res.truth), "open_truth": len(res.truth),
        "false_positives": len(res.false_pos), "tx_frames": res.run.tx, "rx_frames": res.run.rx,
        "cpu_user_s": res.run.cpu_user, "cpu_sys_s": res.run.cpu_sys, "cpu_s_per_m_planned": cpu_per_m(res),
        "hwm_sum_kib": res.run.hwm_sum_kb, "hwm_max_kib": res.run.hwm_max_kb, "pss_sum_kib": res.run.pss_sum_kb,
        "processes": res.run.procs, "note": res.note} for cell, res in done]
    goals = [{"cell": v.cell.name, "judged_on": v.judged, "recall_ok": v.recall_ok, "wall_ratio": v.wall_ratio,
              "wall_ok": v.wall_ok, "cpu_ratio_vs_nmap": v.cpu_ratio, "cpu_ok": v.cpu_ok,
              "oneshot_wall_ratio": v.oneshot_wall_ratio, "oneshot_cpu_ratio_vs_nmap": v.oneshot_cpu_ratio}
             for v in found]
    doc = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
           "load_end": os.getloadavg()[0], "hosts": args.hosts, "seed": args.seed, "cap_s": args.cap,
           "runs": runs, "goals": goals}
    path.write_text(json.dumps(doc, indent=1) + "\n")
