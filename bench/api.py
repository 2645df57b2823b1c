"""API latency under load: p50/p99 of GET /api/v1/scans/{id} from 50 concurrent clients while the
daemon runs a 32-host x 65535-port scan at full rate.

    python bench/api.py [--hosts 32] [--clients 50] [--rate 50000] [--interval 0.5]
    python bench/api.py --smoke     # 2 hosts, 5 clients: seconds, to check it still runs

Each client polls every --interval seconds, as `netscanctl watch` does; --interval 0 makes them
poll back to back (a closed loop), which measures the control process's throughput instead:
there, latency is simply clients / throughput.

Everything stays in the lab (prefix nsa): the daemon runs in the lab's scanner namespace with a
policy that allows only 198.18.0.0/15, the targets are checked to be the lab's, and the clients
talk to it over its Unix socket, which lives on the shared filesystem.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import httpx

from netscand.lab.harness import (
    all_hosts,
    lab_up,
    parse_bench_args,
    running_daemon,
    unwind_on_sigterm,
)
from netscand.statuses import FINISHED

PREFIX = "nsa"
SMOKE = {"hosts": 2, "clients": 5, "interval": 0.1, "timeout": 60}
CONFIG = '[policy]\nallowed_targets = ["198.18.0.0/15"]\n'  # the daemon may scan the lab alone
# What the clients wait on: a full-range TCP scan with profiling (deep without its UDP and CVE
# steps, whose paced UDP confirmation would only lengthen the wait, not the API's work).
FULL_RANGE = {"profile": "custom", "ports": ["1-65535"], "enable_profiling": True}


async def poll(c: httpx.AsyncClient, scan_id: str, interval: float, latencies: list[float],
               errors: list[int], done: asyncio.Event) -> None:
    while not done.is_set():
        t0 = time.perf_counter()
        r = await c.get(f"/api/v1/scans/{scan_id}")
        latencies.append(time.perf_counter() - t0)
        if r.status_code != 200:
            errors.append(r.status_code)
        elif r.json()["status"] in FINISHED:
            done.set()
        await asyncio.sleep(interval)


async def load(sock: str, scan_id: str, args: argparse.Namespace) -> tuple[list[float], list[int], float]:
    # Each client has its own connection. They are made, and connected, before the clock starts:
    # building an httpx client costs the client process tens of milliseconds (its TLS defaults),
    # which is not the daemon's latency.
    pool = [httpx.AsyncClient(base_url="http://netscand", transport=httpx.AsyncHTTPTransport(uds=sock),
                              timeout=30) for _ in range(args.clients)]
    latencies: list[float] = []
    errors: list[int] = []
    done = asyncio.Event()
    try:
        await asyncio.gather(*(c.get("/healthz") for c in pool))
        t0 = time.monotonic()
        polls = asyncio.gather(*(poll(c, scan_id, args.interval, latencies, errors, done) for c in pool))
        try:
            await asyncio.wait_for(polls, args.timeout)
        except TimeoutError:
            raise SystemExit(f"api.py: the scan did not finish within {args.timeout:.0f} s") from None
        wall = time.monotonic() - t0
    finally:
        await asyncio.gather(*(c.aclose() for c in pool))
    return latencies, errors, wall


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=32)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--rate", type=int, default=50_000)
    p.add_argument("--interval", type=float, default=0.5, help="seconds between one client's requests")
    p.add_argument("--timeout", type=float, default=900, help="seconds the scan may take")
    return parse_bench_args(p, SMOKE, argv)


def main() -> int:
    args = parse_args()
    unwind_on_sigterm()
    with lab_up(hosts=args.hosts, prefix=PREFIX) as lab, running_daemon(lab, CONFIG) as daemon:
        hosts = all_hosts(lab)
        with daemon.unix() as c:
            r = c.post("/api/v1/scans/start", json=FULL_RANGE | {"target": hosts, "rate": args.rate})
            if r.status_code != 202:
                raise SystemExit(f"api.py: the scan was refused: {r.status_code} {r.text}")
            scan = r.json()
        latencies, errors, wall = asyncio.run(load(str(daemon.socket), scan["id"], args))
        with daemon.unix() as c:
            final = c.get(f"/api/v1/scans/{scan['id']}").json()
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[max(0, int(len(ms) * 0.99) - 1)]
    print(f"command: {' '.join(sys.argv)}")
    print(f"scan: {args.hosts} hosts x 65535 ports at {args.rate} probes/s: {final['status']}, "
          f"{final['ports_found']} open ports, {wall:.1f} s")
    print(f"GET /api/v1/scans/{{id}} from {args.clients} clients, every {args.interval} s each: {len(ms)} requests, "
          f"{len(ms) / wall:.0f}/s, errors {len(errors)}")
    print(f"latency ms: p50 {statistics.median(ms):.1f}  p99 {p99:.1f}  max {ms[-1]:.1f}  (target p99 < 50)")
    return 0 if not errors and final["status"] == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
