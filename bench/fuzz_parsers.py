"""Coverage-guided fuzzing (atheris, on libFuzzer) of every parser of a stranger's bytes.

    python bench/fuzz_parsers.py                        # every parser, 1,000,000 inputs each
    python bench/fuzz_parsers.py --runs 200000 --only probe.http names.snmp engine.tcp_syn
    python bench/fuzz_parsers.py --list
    python bench/fuzz_parsers.py --smoke                # seconds; needs no atheris (see smoke())

Parsers: each service probe's parse, the mDNS, NetBIOS and SNMP name queries' parse (without
never_raises), the DNS wire reader, certificate_fields, the TCP options and OS guess, the MAC
vendor lookup, and the engine probes' answer() for each probe kind, built from a plan as
tests/engine/test_templates.py builds them. Each parser runs in its own process (`--jobs` at
a time), seeded with real answers (the recorded daemons' bytes, the lab responders' answers,
replies to the probes' own frames). A crash is any exception out of a parser, or a result of
the wrong shape; a hang past --timeout or a native crash counts too. Crashing inputs are kept
under --out. Needs atheris: pip install -e '.[fuzz]'.

Prints per parser the inputs tried, inputs/s, crashing inputs and distinct crash sites, and the
corpus libFuzzer grew. Exit status: 0 when nothing crashed, 1 when something did, 2 when
atheris is missing (--smoke runs without it).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# atheris instruments only modules first imported inside its block (worker()): the harness brings
# the lab's modules, netscand.tls and cryptography, none of them fuzzed; what targets() fuzzes,
# netscand.profiling, netscand.engine and dpkt, is still first imported in there.
from netscand.lab.harness import parse_bench_args, unwind_on_sigterm

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "tests" / "profiling" / "services" / "recorded"
SNMP_RECORDED = ROOT / "tests" / "profiling" / "names" / "recorded" / "snmp-netsnmp.bin"
IDENT = 0x4E53  # the request-id the recorded SNMP answer carries; the other queries use it too
LAB_HOST: dict[str, Any] = {"name": "h1", "ip": "198.18.0.10", "mac": "02:6e:73:12:34:56", "mdns": "s2.local",
                            "netbios": {"name": "FILES", "workgroup": "LAB"}}
SMOKE = {"runs": 1000, "max_len": 1024}
SMOKE_SEED = 20261207  # the smoke's mutations are the same on every run, so a failure reproduces
SMOKE_ATHERIS_PARSER = "engine.tcp_syn"  # with atheris installed, the smoke runs it through libFuzzer too


@dataclass(frozen=True)
class Target:
    parse: Callable[[bytes], object]
    check: Callable[[object], None]  # raises when the result has the wrong shape
    seeds: list[bytes]


# --- what is fuzzed (imported inside atheris's instrumentation in a worker) ---

def targets() -> dict[str, Target]:
    return {**_service_targets(), **_name_targets(), **_other_targets(), **_engine_targets()}


def _service_targets() -> dict[str, Target]:
    from netscand.profiling.services import ServiceInfo
    from netscand.profiling.services.base import BANNER_MAX
    from netscand.profiling.services.probes import ALL

    def check(result: object) -> None:
        if result is not None:
            assert isinstance(result, ServiceInfo) and result.service.islower()
            assert result.banner is None or len(result.banner) <= BANNER_MAX
            assert all(v is None or len(v) < 256 for v in (result.product, result.version, result.cpe))

    seeds = [p.read_bytes() for p in sorted(RECORDED.glob("*.bin"))] + [b"RFB 003.008\n"]
    return {f"probe.{p.name}": Target(p.parse, check, seeds) for p in ALL}


def _name_targets() -> dict[str, Target]:
    from netscand.lab import responders
    from netscand.profiling.names import QUERIES, mdns, netbios
    from netscand.profiling.names.base import NAME_MAX, Reply

    def check(result: object) -> None:
        if result is not None:
            assert isinstance(result, Reply) and (result.name is None or 0 < len(result.name) <= NAME_MAX)

    seeds = [SNMP_RECORDED.read_bytes(),
             responders.mdns_answerer(LAB_HOST)(mdns.request(LAB_HOST["ip"], IDENT)),
             responders.netbios_answerer(LAB_HOST)(netbios.request(LAB_HOST["ip"], IDENT))]
    out = {}
    for query in QUERIES:
        parse = query.parse.__wrapped__  # without never_raises: a bug must show
        out[f"names.{query.source}"] = Target(lambda data, parse=parse: parse(data, IDENT), check, seeds)
    return out


def _other_targets() -> dict[str, Target]:
    from netscand.profiling import dnswire, osguess, vendor
    from netscand.profiling.services.probes import tls

    def no_check(result: object) -> None:
        pass

    def dns_records(data: bytes) -> object:
        for record in dnswire.answers(data) or ():
            dnswire.read_name(data, record.start)
        return dnswire.read_name(data, data[0] if data else 0)

    def os_guess(data: bytes) -> object:
        # ttl, window, IP ID, then options: an observation, the rest a banner
        seen = osguess.Observation(data[0] if data else 0, int.from_bytes(data[1:3], "big"),
                                   int.from_bytes(data[3:5], "big"), data[5:45])
        return osguess.guess([seen, seen], [data[45:].decode("latin-1")])

    names = _name_targets()["names.mdns"].seeds
    cert = (RECORDED / "https-nginx-cert.der").read_bytes()
    options = bytes.fromhex("020405b4 0402 080a 00000000 00000000 01 030307")  # Linux: MSS SACK TS NOP WS
    return {
        "dnswire": Target(dns_records, no_check, names),
        "tls.certificate_fields": Target(tls.certificate_fields, no_check, [cert]),
        "osguess.option_layout": Target(osguess.option_layout, no_check, [options]),
        "osguess.guess": Target(os_guess, no_check, [b"\x40\xfa\xf0\x00\x00" + options + b"OpenSSH_9.2p1 Debian"]),
        "vendor": Target(lambda data: vendor.vendor(data.decode("latin-1")), no_check,
                         [b"02:6e:73:12:34:56", b"00-15-5D-01-02-03"]),
    }


def _engine_targets() -> dict[str, Target]:
    from netscand.engine.probes import PROBES, Answer

    out = {}
    for kind, probe_type in PROBES.items():  # every registered probe type's reply parser
        plan = _plan(kind, (22, 80, 65535) if probe_type.ports else (0,))
        probe = probe_type.build(plan)
        name = probe_type.name

        def check(result: object, plan: Any = plan) -> None:
            if result is not None:
                assert isinstance(result, Answer)
                assert 0 <= result.host < len(plan.hosts) and 0 <= result.port < len(plan.ports)

        out[f"engine.{name}"] = Target(probe.answer, check, _replies(probe))
    return out


def _plan(kind: int, ports: tuple[int, ...]) -> Any:
    """A plan like tests/engine/test_templates.py's: two lab hosts, a fixed key and source."""
    from netscand.engine import plan as plans

    mac = bytes.fromhex("020000000010")
    return plans.Plan(gen=7, kind=kind, slot=2, share=1, retries=1, key=b"k" * 16, ifindex=2,
                      src_ip=0xC6120001, src_mac=bytes.fromhex("020000000001"), sport_base=61440, rate=100.0,
                      timeout_init_ms=100, timeout_min_ms=100, timeout_max_ms=100, shard_size=1024,
                      hosts=(0xC6120010, 0xC6120011), macs=(mac, mac), ports=ports,
                      sport_lo=32768, sport_hi=60999)  # the kernel-shaped SYN picks its source ports


def _replies(probe: Any) -> list[bytes]:
    """Frames that answer the probe's own frames: SYN-ACK, RST, echo reply, ARP reply, ICMP
    unreachable quoting the probe; starting points that pass every check the probe makes."""
    import dpkt

    out = []
    for host in range(len(probe.plan.hosts)):
        sent = dpkt.ethernet.Ethernet(bytes(probe.frame(host, 0, 5)))
        back = {"src": sent.dst, "dst": sent.src}
        ip = sent.data
        if isinstance(ip, dpkt.arp.ARP):
            reply = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REPLY, sha=sent.dst, spa=ip.tpa, tha=ip.sha, tpa=ip.spa)
            out.append(bytes(dpkt.ethernet.Ethernet(type=0x0806, data=reply, **back)))
            continue
        if isinstance(ip.data, dpkt.tcp.TCP):
            tcp = ip.data
            for flags, seq, ack in ((0x12, 0, tcp.seq + 1), (0x14, 0, tcp.seq + 1), (0x04, tcp.ack, 0)):
                answer = dpkt.tcp.TCP(sport=tcp.dport, dport=tcp.sport, seq=seq, ack=ack & 0xFFFFFFFF, flags=flags,
                                      off=6, opts=b"\x02\x04\x05\xb4")
                out.append(_framed(ip, answer, 6, back))
        else:
            out.append(_framed(ip, dpkt.icmp.ICMP(type=0, code=0, data=ip.data.data), 1, back))
        unreach = dpkt.icmp.ICMP(type=3, code=3, data=dpkt.icmp.ICMP.Unreach(data=bytes(ip)[:28]))
        out.append(_framed(ip, unreach, 1, back))
    return out


def _framed(sent_ip: Any, payload: Any, proto: int, back: dict[str, bytes]) -> bytes:
    import dpkt

    ip = dpkt.ip.IP(src=sent_ip.dst, dst=sent_ip.src, p=proto, ttl=61, data=payload)
    return bytes(dpkt.ethernet.Ethernet(data=ip, **back))


# --- one parser, in a process of its own ---

def worker(name: str, args: argparse.Namespace) -> None:
    import atheris

    with atheris.instrument_imports(include=["netscand", "dpkt"]):
        target = targets()[name]
    corpus = args.out / "corpus" / name
    crashes = args.out / "crashes" / name
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    for seed in target.seeds:
        (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)

    atheris.Setup([sys.argv[0], f"-runs={args.runs}", f"-max_len={args.max_len}", f"-timeout={args.timeout}",
                   "-rss_limit_mb=2048", "-print_final_stats=1", "-print_pcs=0", str(corpus)],
                  lambda data: attempt(name, target, data, crashes))
    atheris.Fuzz()


def attempt(name: str, target: Target, data: bytes, crashes: Path) -> bool:
    """One input through one parser and its check; a crash is kept (one input per distinct
    site) and told on stderr. Returns whether it crashed."""
    try:
        target.check(target.parse(data))
        return False
    except Exception as exc:  # noqa: BLE001 - every exception is a finding, kept and counted
        site = traceback.extract_tb(exc.__traceback__)[-1]
        key = f"{type(exc).__name__}-{Path(site.filename).name}-{site.lineno}"
        new = not (crashes / key).exists()
        if new:
            (crashes / key).write_bytes(data)
        # One line per crashing input (the count), the whole story once per site.
        print(f"CRASH {name}: {key}: {exc!r:.200}" if new else f"CRASH {name}:", file=sys.stderr, flush=True)
        return True


# --- the run ---

@dataclass
class Outcome:
    name: str
    inputs: int
    seconds: float
    crashing_inputs: int
    sites: int
    corpus: int
    failure: str | None  # libFuzzer's own finding (a hang, a native crash), or a worker that died


def run_one(name: str, args: argparse.Namespace) -> Outcome:
    started = time.monotonic()
    command = [sys.executable, __file__, "--worker", name, "--runs", str(args.runs), "--max-len", str(args.max_len),
               "--timeout", str(args.timeout), "--out", str(args.out)]
    done = subprocess.run(command, capture_output=True, text=True, errors="replace", cwd=ROOT)
    seconds = time.monotonic() - started
    log = done.stderr
    (args.out / f"{name}.log").write_text(log)
    executed = re.search(r"stat::number_of_executed_units: (\d+)", log)
    failure = None
    if done.returncode != 0 or not executed:
        failure = f"exit {done.returncode}: " + " | ".join(log.strip().splitlines()[-3:])
    sites = len(list((args.out / "crashes" / name).glob("*")))
    corpus = len(list((args.out / "corpus" / name).glob("*")))
    return Outcome(name, int(executed.group(1)) if executed else 0, seconds, log.count(f"CRASH {name}:"),
                   sites, corpus, failure)


def report(outcomes: list[Outcome], args: argparse.Namespace, seconds: float) -> bool:
    print(f"{'parser':26} {'inputs':>12} {'inputs/s':>10} {'crashes':>8} {'sites':>6} {'corpus':>7} {'s':>7}")
    for o in outcomes:
        print(f"{o.name:26} {o.inputs:>12,} {o.inputs / o.seconds:>10,.0f} {o.crashing_inputs:>8} {o.sites:>6} "
              f"{o.corpus:>7} {o.seconds:>7.0f}")
        if o.failure:
            print(f"  {o.name}: {o.failure}")
    total = sum(o.inputs for o in outcomes)
    bad = [o for o in outcomes if o.crashing_inputs or o.failure or o.inputs < args.runs]
    print(f"{'total':26} {total:>12,} {'':>10} {sum(o.crashing_inputs for o in outcomes):>8}")
    how = "in this process" if args.smoke else f"{args.jobs} at a time"
    print(f"{len(outcomes)} parsers, {args.runs:,} inputs each asked, {how}, {seconds:.0f} s; "
          f"logs, corpus and crashing inputs in {args.out}")
    for o in bad:
        print(f"FAILED {o.name}: {o.crashing_inputs} crashing inputs, {o.inputs:,} run, {o.failure or ''}")
    return not bad


# --- the smoke: every parser, in this process, without atheris ---

def mutate(rng: random.Random, data: bytes, seeds: list[bytes], max_len: int) -> bytes:
    """One input near `data`, made the way libFuzzer's mutators make theirs: bits flipped, bytes
    set, inserted or dropped, a cut, a splice with another seed, a run of 0xff (which once gave
    four banner parsers an overlong version)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(out) + 1)
        match rng.randrange(7):
            case 0 if out:
                out[at % len(out)] ^= 1 << rng.randrange(8)
            case 1 if out:
                out[at % len(out)] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
            case 2:
                out[at:at] = rng.randbytes(rng.randint(1, 16))
            case 3:
                del out[at:at + rng.randint(1, 16)]
            case 4:
                del out[at:]
            case 5:
                other = rng.choice(seeds)
                out[at:] = other[rng.randrange(len(other) + 1):]
            case _:
                out[at:at] = b"\xff" * rng.randint(1, 300)
    return bytes(out[:max_len])


def smoke_one(name: str, target: Target, args: argparse.Namespace) -> Outcome:
    """The seeds, then --runs mutations of them, through attempt() as the fuzzer calls it."""
    rng = random.Random(f"{SMOKE_SEED}:{name}")
    crashes = args.out / "crashes" / name
    crashes.mkdir(parents=True, exist_ok=True)
    seeds = target.seeds or [b""]
    started = time.monotonic()
    inputs = [*seeds, *(mutate(rng, rng.choice(seeds), seeds, args.max_len) for _ in range(args.runs))]
    crashed = sum(attempt(name, target, data, crashes) for data in inputs)
    return Outcome(name, len(inputs), time.monotonic() - started, crashed, len(list(crashes.iterdir())),
                   len(seeds), None)


def smoke(chosen: list[str], args: argparse.Namespace) -> list[Outcome]:
    """Every parser fed its seeds and a few hundred seeded mutations in this process, through the
    harness the fuzzer uses: fuzzing each parser under libFuzzer costs seconds of instrumentation
    alone. Where atheris is installed (CI installs the `fuzz` extra), one parser also goes through
    the real libFuzzer worker, so that path is checked too."""
    found = targets()
    outcomes = [smoke_one(name, found[name], args) for name in chosen]
    if importlib.util.find_spec("atheris") is not None:
        outcomes.append(replace(run_one(SMOKE_ATHERIS_PARSER, args), name=f"{SMOKE_ATHERIS_PARSER} (atheris)"))
    return outcomes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1_000_000, help="inputs per parser (default 1,000,000)")
    p.add_argument("--jobs", type=int, default=2, help="parsers fuzzed at once, one process each")
    p.add_argument("--max-len", type=int, default=4096, help="longest input tried, in bytes")
    p.add_argument("--timeout", type=int, default=10, help="seconds one input may take before it counts as a hang")
    p.add_argument("--only", nargs="+", metavar="PARSER", help="fuzz only these (see --list)")
    p.add_argument("--out", type=Path, help="where logs, corpus and crashes go (default: a new temporary dir)")
    p.add_argument("--list", action="store_true", help="name the parsers and exit")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return parse_bench_args(p, SMOKE, argv)


def main() -> int:
    args = parse_args()
    unwind_on_sigterm()
    if not args.smoke and importlib.util.find_spec("atheris") is None:
        print("bench/fuzz_parsers.py needs atheris: pip install -e '.[fuzz]' (or run --smoke)", file=sys.stderr)
        return 2
    if args.worker:
        worker(args.worker, args)
        return 0
    names = list(targets())
    if args.list:
        print("\n".join(names))
        return 0
    unknown = set(args.only or ()) - set(names)
    if unknown:
        print(f"unknown parser(s): {', '.join(sorted(unknown))}; --list names them", file=sys.stderr)
        return 2
    args.out = args.out or Path(tempfile.mkdtemp(prefix="netscand-fuzz-"))
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = args.only or names
    how = "seeded mutations in this process (smoke)" if args.smoke else f"{args.jobs} at a time"
    print(f"fuzzing {len(chosen)} parsers, {args.runs:,} inputs each, {how} (cpus: {os.cpu_count()})", flush=True)
    started = time.monotonic()
    if args.smoke:
        outcomes = smoke(chosen, args)
    else:
        with ThreadPoolExecutor(args.jobs) as pool:
            outcomes = list(pool.map(lambda name: run_one(name, args), chosen))
    return 0 if report(outcomes, args, time.monotonic() - started) else 1


if __name__ == "__main__":
    sys.exit(main())
