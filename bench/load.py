"""API under load while scans queue: clients hammer status, result and list, back to back, over
both listeners, while the daemon works through a queue of scans two at a time; then every scan
must have completed with the lab's truth, and no request may have failed.

    python bench/load.py [--clients 100] [--scans 22] [--hosts 8] [--ports 1-10000] [--rate 10000]
    python bench/load.py --smoke    # 4 clients, 3 scans of 2 hosts x 1000 ports: seconds

Half the clients use the Unix socket, half HTTPS with a read token. Each client process (one
per listener, so the clients' own work is spread over the cores as the daemon's is) runs its
clients on one event loop; the HTTPS one runs inside the lab's scanner namespace, where the
TLS port is. Each client has its own connection, made before the clock starts.

Everything stays in the lab (prefix nsw): the daemon runs in its scanner namespace with a
policy that allows only 198.18.0.0/15, and the API is reached over its Unix socket and its
scanner namespace's loopback. The lab is torn down at the end, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import ssl
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

import httpx
from pyroute2 import netns

from netscand.lab import Lab
from netscand.lab.harness import (
    DAEMON_PORT,
    Daemon,
    lab_up,
    open_ports,
    parse_bench_args,
    running_daemon,
    truth_open,
    unwind_on_sigterm,
)
from netscand.statuses import FINISHED

PREFIX = "nsw"  # not fuzz.sh's nsf: both may run at once
SMOKE = {"clients": 4, "scans": 3, "hosts": 2, "ports": "1-1000", "timeout": 60}
# One owner queues every scan and one address opens every HTTPS client: the limits that keep a
# hostile client from holding the daemon (README, "Running on untrusted networks") are raised here.
CONFIG = """[daemon]
max_running_scans = 2
max_queued_per_owner = 1024
max_connections = 2048
max_connections_per_address = 2048
[policy]
allowed_targets = ["198.18.0.0/15"]
"""
OPERATIONS = ("status", "result", "list")


@dataclass
class Sample:
    """What one client process saw: latencies (s) by operation, and what went wrong."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPERATIONS})
    errors: Counter[str] = field(default_factory=Counter)
    wall: float = 0.0


@dataclass(frozen=True)
class Target:
    """How a client process reaches the API."""

    listener: str
    base_url: str
    uds: str | None = None
    namespace: str | None = None
    cafile: str | None = None
    token: str | None = None

    def client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=self.cafile) if self.cafile else True
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, verify=verify, timeout=30,
                                 transport=httpx.AsyncHTTPTransport(uds=self.uds, verify=verify))


async def hammer(c: httpx.AsyncClient, ids: list[str], sample: Sample, stop: Event, rng: random.Random) -> None:
    while not stop.is_set():
        op = rng.choice(OPERATIONS)
        if op == "list":
            path, params = "/api/v1/scans", {"per_page": "25", "page": str(rng.randint(1, 2))}
        else:
            scan_id = rng.choice(ids)
            path, params = f"/api/v1/scans/{scan_id}" + ("/result" if op == "result" else ""), {}
        t0 = time.perf_counter()
        try:
            r = await c.get(path, params=params)
            r.read()
        except httpx.HTTPError as exc:
            sample.errors[f"{op}: {type(exc).__name__}"] += 1
            continue
        sample.latencies[op].append(time.perf_counter() - t0)
        if r.status_code != 200:
            sample.errors[f"{op}: {r.status_code}"] += 1


async def run_clients(target: Target, clients: int, ids: list[str], stop: Event) -> Sample:
    # Made and connected before the clock starts: building a client costs the client process
    # tens of milliseconds (its TLS defaults), which is not the daemon's latency.
    pool = [target.client() for _ in range(clients)]
    await asyncio.gather(*(c.get("/healthz") for c in pool))
    sample = Sample()
    t0 = time.monotonic()
    await asyncio.gather(*(hammer(c, ids, sample, stop, random.Random(i)) for i, c in enumerate(pool)))
    sample.wall = time.monotonic() - t0
    await asyncio.gather(*(c.aclose() for c in pool))
    return sample


def client_process(target: Target, clients: int, ids: list[str], stop: Event,
                   out: Connection) -> None:
    if target.namespace:
        netns.setns(target.namespace, flags=0)  # this process only: its TLS port is in there
    out.send(asyncio.run(run_clients(target, clients, ids, stop)))


def start_scans(d: Daemon, hosts: list[str], count: int, ports: str, rate: int) -> list[str]:
    with d.unix() as c:
        ids = []
        for _ in range(count):
            r = c.post("/api/v1/scans/start", json={"target": hosts, "profile": "custom", "ports": [ports],
                                                     "rate": rate})
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        running = c.get("/api/v1/scans", params={"status": "running"}).json()["total"]
        queued = c.get("/api/v1/scans", params={"status": "queued"}).json()["total"]
    print(f"{count} scans of {len(hosts)} hosts x ports {ports} at {rate} probes/s: {running} running, "
          f"{queued} queued")
    return ids


def wait_all(d: Daemon, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with d.unix() as c:
        while time.monotonic() < deadline:
            if all(c.get(f"/api/v1/scans/{i}").json()["status"] in FINISHED for i in ids):
                return
            time.sleep(1)
    raise SystemExit(f"load.py: the scans did not finish within {timeout:.0f} s")


def check_results(d: Daemon, lab: Lab, ids: list[str], ports: range) -> list[str]:
    """Every scan completed, and found every lab host and exactly the truth's open ports."""
    expected = truth_open(lab, ports)
    hosts = {h["ip"] for h in lab.truth["hosts"]}
    wrong = []
    with d.unix() as c:
        for scan_id in ids:
            status = c.get(f"/api/v1/scans/{scan_id}").json()
            result = c.get(f"/api/v1/scans/{scan_id}/result").json()
            found = {dev["ip"] for dev in result["devices"]}
            if status["status"] != "completed" or found != hosts or open_ports(result) != expected:
                wrong.append(f"{scan_id}: {status['status']} {status['error'] or ''}, {len(found)}/{len(hosts)} "
                             f"hosts, {len(open_ports(result) & expected)}/{len(expected)} open ports, "
                             f"{len(open_ports(result) - expected)} wrong")
    return wrong


def percentile(ms: list[float], p: float) -> float:
    return ms[min(len(ms) - 1, int(len(ms) * p))]


def report(name: str, latencies: list[float], wall: float) -> str:
    ms = sorted(x * 1000 for x in latencies)
    if not ms:
        return f"{name:12} no requests"
    return (f"{name:12} {len(ms):7} requests {len(ms) / wall:6.0f}/s   p50 {statistics.median(ms):6.1f} ms   "
            f"p99 {percentile(ms, 0.99):6.1f} ms   max {ms[-1]:7.1f} ms")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--scans", type=int, default=22)
    p.add_argument("--hosts", type=int, default=8)
    p.add_argument("--ports", default="1-10000", help="each scan's port range, a-b")
    p.add_argument("--rate", type=int, default=10_000, help="each scan's probes per second")
    p.add_argument("--timeout", type=float, default=900, help="seconds the scans may take in all")
    return parse_bench_args(p, SMOKE, argv)


def hammer_until_done(d: Daemon, targets: list[Target], ids: list[str], args: argparse.Namespace) -> tuple[
        list[Sample], float]:
    """The clients, one process per target, until every scan has ended; what each saw, and how long."""
    mp = multiprocessing.get_context("fork")
    stop = mp.Event()
    procs, pipes = [], []
    for i, target in enumerate(targets):
        share = args.clients // len(targets) + (i < args.clients % len(targets))
        mine, theirs = mp.Pipe(duplex=False)
        proc = mp.Process(target=client_process, args=(target, share, ids, stop, theirs))
        proc.start()
        procs.append(proc)
        pipes.append(mine)
    t0 = time.monotonic()
    try:
        wait_all(d, ids, args.timeout)
    finally:
        stop.set()
        samples = [pipe.recv() for pipe in pipes]
        for proc in procs:
            proc.join()
    return samples, time.monotonic() - t0


def print_figures(args: argparse.Namespace, targets: list[Target], samples: list[Sample], wall: float,
                  errors: Counter[str], wrong: list[str], scans: int) -> None:
    print(f"command: {' '.join(sys.argv)}")
    print(f"{args.clients} clients for {wall:.1f} s, until the last scan ended; GET status, result and list "
          "(25 a page), back to back")
    for target, sample in zip(targets, samples):
        print(report(target.listener, [x for op in OPERATIONS for x in sample.latencies[op]], sample.wall))
    for op in OPERATIONS:
        print(report(op, [x for s in samples for x in s.latencies[op]], max(s.wall for s in samples)))
    everything = [x for s in samples for op in OPERATIONS for x in s.latencies[op]]
    print(report("all", everything, max(s.wall for s in samples)))
    print(f"error responses: {sum(errors.values())}" + (f" ({dict(errors)})" if errors else ""))
    print(f"scans completed with the lab's truth: {scans - len(wrong)}/{scans}")
    for line in wrong:
        print(f"  {line}")


def main() -> int:
    args = parse_args()
    unwind_on_sigterm()
    first, last = map(int, args.ports.split("-"))
    with lab_up(hosts=args.hosts, prefix=PREFIX) as lab, running_daemon(lab, CONFIG) as d:
        ids = start_scans(d, [h["ip"] for h in lab.truth["hosts"]], args.scans, args.ports, args.rate)
        targets = [
            Target("unix", "http://netscand", uds=str(d.socket)),
            Target("tls", f"https://127.0.0.1:{DAEMON_PORT}", namespace=lab.scanner_ns,
                   cafile=str(d.cert), token=d.token("load", "read")),
        ]
        samples, wall = hammer_until_done(d, targets, ids, args)
        wrong = check_results(d, lab, ids, range(first, last + 1))
    errors = sum((s.errors for s in samples), Counter())
    print_figures(args, targets, samples, wall, errors, wrong, len(ids))
    return 0 if not errors and not wrong else 1


if __name__ == "__main__":
    raise SystemExit(main())
