"""Every benchmark still runs: each bench's --smoke (smallest sizes, seconds) as a person would
start it, from the repository, checking its exit status and the figures it prints. A bench that
no longer starts, or whose figures lost a line, fails CI instead of the next person who runs it.

The benches build their own labs (prefixes nsa, nsb, nsf, nsk, nsp, nsr, nss, nsw) and daemons through
netscand.lab.harness, as the tests do; lab_lock keeps other test runs' labs out of the way, and
bench_lock benches run by hand.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from netscand.lab.harness import parse_bench_args

ROOT = Path(__file__).resolve().parents[2]
CLEANUP_TIMEOUT_S = 60  # for a bench told to stop: its daemon, then its lab


@dataclass(frozen=True)
class Smoke:
    argv: tuple[str, ...]
    figures: tuple[str, ...]  # patterns, each of which some line of stdout must match
    timeout: float  # seconds; the smoke takes a fraction of it on an idle machine


LAB_BENCHES = {
    "engine": Smoke(("bench/engine.py",), (
        r"^netscand: 2 hosts x 65535 ports = 131,070 probes planned; exit 0$",
        r"^  recall 100\.00% \(\d+/\d+ open ports\) \| false positives 0$",
        r"^netscand +2 +[\d.]+ +[\d,]+ ",
    ), 120),
    "engine-matrix": Smoke(("bench/engine.py", "--matrix"), (
        r"^p1024-clean +netscand +[\d.]+ +100\.00% +0 +[\d,]+ +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +0  $",
        # The daemon's row read from /proc: frames sent, CPU and memory it used, none of them 0.
        (r"^p1024-clean +netscand-daemon +[\d.]+ +100\.00% +0 +[1-9][\d,]* +(?!0\.00 )[\d.]+ +[\d.]+ "
         r"+(?!0\.0 )[\d.]+ +(?!0\.0 )[\d.]+ +0  $"),
        r"^p1024-(loss5|delay20) +netscand +[\d.]+ +[\d.]+% +\d+ +[\d,]+ ",
        r"^p1024-(loss5|delay20) +netscand-daemon +[\d.]+ +[\d.]+% +\d+ +[\d,]+ ",
        r"^routed16 +netscand +[\d.]+ +100\.00% +0 +[\d,]+ ",
        r"^routed16 +netscand-daemon +[\d.]+ +100\.00% +0 +[\d,]+ ",
        r"^routed16 +nmap +>?[\d.]+ +[\d.]+% +\d+ +[\d,]+ ",
        r"^routed16 +masscan +>?[\d.]+ +[\d.]+% +\d+ +[\d,]+ ",
        r"^p1024-loss5 +netscand-daemon +(met|NOT met) +x[\d.]+ +- +x[\d.]+ +(met|NOT met) +x[\d.]+ +x[\d.]+$",
        (r"^nmap: -sS -n -T4 --max-retries 2 \(-Pn on port cells; its own discovery on routed16\); masscan: "
         r"--rate 10000000; netscand: scan TARGETS --ports P --json; netscand-daemon: the same request to "),
    ), 240),
    "adapt": Smoke(("bench/adapt.py",), (
        r"^scan: finished in [\d.]+ s, [\d,]+ probes sent",
        r"^recall 100\.00% \(\d+/\d+ open ports\) \| false positives 0$",
        r"^throttled +\d+ +[\d,]+ +[\d,]+ +[\d,]+ +[\d.]+$",
        r"^plot: .+\.png$",
    ), 120),
    "api": Smoke(("bench/api.py",), (
        r"^scan: 2 hosts x 65535 ports at \d+ probes/s: completed, \d+ open ports",
        r"^GET /api/v1/scans/\{id\} from 5 clients, every 0\.1 s each: \d+ requests, \d+/s, errors 0$",
        r"^latency ms: p50 [\d.]+  p99 [\d.]+  max [\d.]+",
    ), 120),
    "load": Smoke(("bench/load.py",), (
        r"^(unix|tls|status|result|list|all) +\d+ requests +\d+/s +p50 +[\d.]+ ms +p99 +[\d.]+ ms",
        r"^error responses: 0$",
        r"^scans completed with the lab's truth: 3/3$",
    ), 180),
    "profiling": Smoke(("bench/profiling.py",), (
        r"^all +\| +\d+ +\d+ +\d+ +[\d.]+% +\| +\d+ +\d+ +\d+ +[\d.]+%",
        r"^  netscand +median +[\d.]+  runs: ",
        r"^  netscand/nmap: x[\d.]+ \(nmap/netscand: x[\d.]+\)$",
    ), 180),
    "deep": Smoke(("bench/deep.py",), (
        r"^TCP recall +\| +[\d.]+% \(\d+/\d+, FP \d+\) +\| +[\d.]+% \(\d+/\d+, FP \d+\)",
        r"^UDP states right +\| +[\d.]+% \(\d+/\d+\) +\| +[\d.]+% \(\d+/\d+\)",
        r"^udp service right +\| ",
        r"^time: netscand/nmap x[\d.]+ \(nmap/netscand x[\d.]+\)$",
        r"^goal \(nmap's UDP accuracy or better in a tenth of its time\): (met|NOT met): ",
    ), 180),
    "stealth": Smoke(("bench/stealth.py",), (
        r"^netscand stealth +\| 2 x 10 +\| [\d.]+ s +\| [\d.]+% \(\d+/\d+, FP \d+\) +\| \d/2 hosts +\| \d+ +\| \d+ \(\+\d+ port-only\)$",
        r"^nmap -T4 +\| 2 x 10 +\| [\d.]+ s +\| [\d.]+% \(\d+/\d+, FP \d+\) +\| \d/2 hosts +\| \d+ +\| ",
        r"^goal \(no alert at the default stealth level, faster than nmap's fastest template without one\): "
        r"NOT met: not judged: ",
    ), 180),
    "fuzz.sh": Smoke(("bench/fuzz.sh", "--seed", "4647"), (
        r"^unix: \d+ requests \(.*\); failed checks: none; schemathesis exit 0$",
        r"^tls : \d+ requests \(.*\); failed checks: none; schemathesis exit 0$",
        r"^5xx in the daemon's access log: 0; daemon still serving: yes",
    ), 180),
}


def run_smoke(smoke: Smoke, *extra: str) -> str:
    script, *args = smoke.argv
    interpreter = ["bash"] if script.endswith(".sh") else [sys.executable]
    out = run_bench([*interpreter, script, *args, "--smoke", *extra], smoke.timeout)
    told = f"exit {out.returncode}\n--- stdout\n{out.stdout[-4000:]}\n--- stderr\n{out.stderr[-4000:]}"
    assert out.returncode == 0, told
    lines = out.stdout.splitlines()
    missing = [p for p in smoke.figures if not any(re.search(p, line) for line in lines)]
    assert not missing, f"no line matches {missing}\n{told}"
    return out.stdout


def run_bench(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """The bench in a session of its own. On timeout SIGTERM goes to its whole process group (the
    bench, its daemon, its tools), so the bench unwinds and tears its lab down, as on Ctrl-C;
    subprocess.run's SIGKILL to the bench alone would orphan both. Its output so far is kept."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"PYTHON": sys.executable}, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=CLEANUP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        pytest.fail(f"{argv[1]} --smoke did not finish within {timeout:g} s (exit {proc.returncode} after "
                    f"SIGTERM)\n--- stdout\n{stdout[-4000:]}\n--- stderr\n{stderr[-4000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


@pytest.mark.lab
@pytest.mark.parametrize("name", LAB_BENCHES)
def test_a_lab_bench_runs_end_to_end_in_its_smoke_mode(name: str, bench_lock: None) -> None:
    run_smoke(LAB_BENCHES[name])


def test_the_parser_fuzzer_runs_every_parser_in_its_smoke_mode_and_one_through_libfuzzer(tmp_path: Path) -> None:
    """Every parser in process, and one through atheris's libFuzzer worker: .ci/setup installs
    the fuzz extra so that the path the real fuzzing takes cannot rot unseen either."""
    listed = run_bench([sys.executable, "bench/fuzz_parsers.py", "--list"], 60)
    assert listed.returncode == 0, listed.stderr
    parsers = len(listed.stdout.split())
    smoke = Smoke(("bench/fuzz_parsers.py",), (
        rf"^fuzzing {parsers} parsers, 1,000 inputs each, seeded mutations in this process \(smoke\)",
        r"^probe\.http +[\d,]+ +[\d,]+ +0 +0 ",
        r"^engine\.tcp_syn +[\d,]+ +[\d,]+ +0 +0 ",
        r"^engine\.tcp_syn \(atheris\) +[\d,]+ +[\d,]+ +0 +0 ",
        r"^total +[\d,]+ +0$",
    ), 120)
    stdout = run_smoke(smoke, "--out", str(tmp_path))
    assert "FAILED" not in stdout


def test_the_inventory_bench_runs_in_its_smoke_mode() -> None:
    """No lab: a store in a temporary directory, its devices merged in, queried both ways."""
    run_smoke(Smoke(("bench/inventory.py",), (
        r"^inventory: 3,000 devices in 20 sites, written through inventory\.merge in [\d.]+ s; 20 runs",
        r"^port 22 +\d+ \| +[\d.]+ +[\d.]+ +[\d.]+ \| +[\d.]+ +[\d.]+ +[\d.]+$",
        r"^goal \(p99 under 50 ms for every query\): (met|NOT met)$",
        r"^merge_scan of a 4,096-address scan, unchanged \([\d,]+ devices found\): [\d.]+ s, 0 changes$",
        r"^merge_scan of a 4,096-address scan, changed \([\d,]+ devices found\): [\d.]+ s, [\d,]+ changes$",
    ), 120))


def test_the_receive_bench_runs_in_its_smoke_mode() -> None:
    """No lab: ring blocks laid out in memory, read per frame and in bulk."""
    run_smoke(Smoke(("bench/replies.py",), (
        r"^replies/block +per frame us/reply +bulk us/reply +ratio$",
        r"^ +32 +[\d.]+ +[\d.]+ +[\d.]+x$",
        r"^ +454 +[\d.]+ +[\d.]+ +[\d.]+x$",
    ), 60))


def test_the_send_bench_runs_in_its_smoke_mode() -> None:
    """No lab: batches of probes sent into a socket pair, per probe and in bulk."""
    run_smoke(Smoke(("bench/sends.py",), (
        r"^probes/batch +per probe us/probe +bulk us/probe +ratio$",
        r"^ +16 +[\d.]+ +[\d.]+ +[\d.]+x$",
        r"^ +256 +[\d.]+ +[\d.]+ +[\d.]+x$",
    ), 60))


def test_a_smoke_size_for_no_option_of_the_bench_is_refused() -> None:
    """A misspelt key would be taken by set_defaults and ignored: the smoke would run full size."""
    def parser() -> argparse.ArgumentParser:
        p = argparse.ArgumentParser()
        p.add_argument("--hosts", type=int, default=32)
        return p
    with pytest.raises(ValueError, match="hostz"):
        parse_bench_args(parser(), {"hostz": 2}, ["--smoke"])
    assert parse_bench_args(parser(), {"hosts": 2}, ["--smoke"]).hosts == 2
