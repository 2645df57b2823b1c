"""Benchmark of the engine's closed-loop rate (engine/rate.py) under a throttle.

    python bench/adapt.py [--hosts 16] [--limit 5000] [--throttle-at 2] [--lift-at 6] [--plot PNG]
    python bench/adapt.py --smoke      # a small lab, seconds: checks it still runs

In a lab of its own (prefix nsr), one adaptive plan over every port of the lab's on-link hosts
runs in a real worker in this process (netscand/lab/adapt.py), at the default ceiling; the
scanner's link is throttled to --limit frames/s at --throttle-at seconds and released at
--lift-at. Prints, per phase, the rate the loop paced at, the probes really sent and the
replies, and the loop's loss estimate; how long the rate took to fall under the throttle and to
climb back after it; recall against the lab's truth. Writes a PNG of rate, probes sent, replies
and estimated loss against time (matplotlib: the bench extra). One worker: the figures are one
core's, and wall times are noisy on a shared machine.

Exit status: 0; 1 if an open port was missed or the scan did not finish; 2 if the lab could
not be built.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import structlog

from netscand.config import EngineConfig
from netscand.lab import Lab, LabError, adapt
from netscand.lab.harness import (
    bench_exit,
    parse_bench_args,
    print_bench_footer,
    unwind_on_sigterm,
)

PREFIX = "nsr"  # not the tests' nor the other benches'
PORTS = range(1, 65536)
SMOKE = {"hosts": 8, "throttle_at": 0.5, "lift_at": 1.5}
TIMEOUT_S = 300
PLOT = Path(tempfile.gettempdir()) / "netscand-adapt.png"


def on_link(lab: Lab) -> int:
    return sum(1 for h in lab.truth["hosts"] if h["kind"] == "imitation" and not h["routed"])


def phases(run: adapt.Run, args: argparse.Namespace) -> None:
    spans = (("before", 0.0, args.throttle_at), ("throttled", args.throttle_at, args.lift_at),
             ("after", args.lift_at, float("inf")))
    print(f"{'phase':<10} {'points':>6} {'rate/s':>9} {'sent/s':>9} {'replies/s':>9} {'max loss':>8}  (medians)")
    for name, lo, hi in spans:
        points = [p for p in run.trace if lo <= p.t < hi]
        if not points:
            print(f"{name:<10} {0:>6}  (the scan had ended)")
            continue
        print(f"{name:<10} {len(points):>6} {statistics.median(p.rate for p in points):>9,.0f} "
              f"{statistics.median(p.sent for p in points):>9,.0f} "
              f"{statistics.median(p.replies for p in points):>9,.0f} {max(p.loss for p in points):>8.2f}")


def reactions(run: adapt.Run, args: argparse.Namespace) -> None:
    """How long after the throttle the rate was down to 1.5x it, and after the lift back at the
    highest rate it had before the throttle."""
    before = [p.rate for p in run.trace if p.t < args.throttle_at]
    fell = next((p.t for p in run.trace if p.t >= args.throttle_at and p.rate <= 1.5 * args.limit), None)
    top = max(before, default=0.0)
    back = next((p.t for p in run.trace if p.t >= args.lift_at and p.rate >= 0.9 * top), None)
    print("\nrate fell to 1.5x the throttle after: "
          + (f"{fell - args.throttle_at:.2f} s" if fell is not None else "never"))
    print(f"rate back at 90% of its pre-throttle {top:,.0f}/s after the lift: "
          + (f"{back - args.lift_at:.2f} s" if back is not None else "not before the scan ended"))


def plot(run: adapt.Run, args: argparse.Namespace, path: Path) -> None:
    import matplotlib  # the bench extra; only the plot needs it

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    t = [p.t for p in run.trace]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), height_ratios=(3, 1))
    top.plot(t, [p.rate for p in run.trace], label="rate the loop paces at")
    top.plot(t, [p.sent for p in run.trace], label="probes sent/s", alpha=0.7)
    top.plot(t, [p.replies for p in run.trace], label="replies/s", alpha=0.7)
    top.axvspan(args.throttle_at, args.lift_at, color="grey", alpha=0.15, label=f"throttle {args.limit:,}/s")
    top.hlines(args.limit, args.throttle_at, args.lift_at, colors="grey", linestyles="dashed")
    top.set_yscale("log")
    top.set_ylabel("per second")
    top.legend(loc="lower right")
    bottom.plot(t, [p.loss for p in run.trace], color="tab:red")
    bottom.set_ylabel("estimated loss")
    bottom.set_xlabel("seconds since the scan's start")
    bottom.set_ylim(0, 1)
    fig.suptitle(f"closed-loop rate: {len(run.truth)} open ports, recall {recall(run):.2%}, {run.seconds:.1f} s")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def recall(run: adapt.Run) -> float:
    return len(run.found & run.truth) / len(run.truth) if run.truth else 1.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=16, help="lab hosts (default 16; its on-link ones are scanned)")
    p.add_argument("--seed", type=int, default=1, help="lab seed (default 1)")
    p.add_argument("--limit", type=int, default=5_000, help="the throttle, frames/s the scanner may send")
    p.add_argument("--throttle-at", type=float, default=2.0, help="seconds into the scan")
    p.add_argument("--lift-at", type=float, default=6.0, help="seconds into the scan")
    p.add_argument("--plot", type=Path, default=PLOT, help=f"the PNG written (default {PLOT})")
    args = parse_bench_args(p, SMOKE, argv)
    if not 0 <= args.throttle_at < args.lift_at or args.limit < 1:
        p.error("need 0 <= --throttle-at < --lift-at and --limit >= 1")
    return args


def main() -> int:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress when piped
    unwind_on_sigterm()
    # The loop's own lines (engine.rate) would interleave with the figures: they go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    ceiling = EngineConfig().rate
    try:
        lab = Lab.up(hosts=args.hosts, seed=args.seed, prefix=PREFIX)
    except LabError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    try:
        hosts = on_link(lab)
        print(f"lab {PREFIX}: {hosts} on-link hosts x {len(PORTS)} ports = {hosts * len(PORTS):,} probes, "
              f"ceiling {ceiling:,.0f}/s (engine.rate's default), throttle {args.limit:,}/s "
              f"from {args.throttle_at:g} s to {args.lift_at:g} s; one worker")
        run = adapt.run(lab, hosts, PORTS, ceiling, [adapt.Phase(args.throttle_at, args.limit),
                                                     adapt.Phase(args.lift_at, 0)], TIMEOUT_S)
    finally:
        lab.down()
    print(f"scan: {'finished' if run.finished else 'NOT finished'} in {run.seconds:.2f} s, {run.sent:,} probes sent "
          f"(retries included), {run.matched:,} replies matched")
    print(f"recall {recall(run):.2%} ({len(run.found & run.truth)}/{len(run.truth)} open ports) | "
          f"false positives {len(run.found - run.truth)}\n")
    phases(run, args)
    reactions(run, args)
    plot(run, args, args.plot)
    print(f"plot: {args.plot}")
    print_bench_footer()
    return 0 if run.finished and run.found == run.truth else 1


if __name__ == "__main__":
    bench_exit(main)
