"""The device inventory at size: filtered device queries over 100,000 devices, and a 65,536-address scan's merge.

    python bench/inventory.py [--devices 100000] [--sites 20] [--queries 200] [--scan 65536] [--density 1]
                              [--seed 1] [--no-http] [--merges-only]
    python bench/inventory.py --smoke   # 3,000 devices, 20 queries each, a 4,096-address scan

No lab, no packet: everything happens in a SQLite store in a temporary directory. The devices go
in through the store's own functions, as the daemon's would: sites.create for the sites, then
inventory.merge (a completed scan's merge) of synthetic scan results, a scan per site (addresses
in 198.18.0.0/15, a spread of ports, services, products and versions, OS guesses, hostnames,
vendors behind real OUIs, CVEs of each severity), then a second scan of a third of the sites that
misses a tenth of their devices, so some are gone and last seen earlier.

Then each device query (GET /api/v1/devices's filters, alone and combined; pages 1 to 5 of 25)
runs --queries times through store.devices.page, the function the API calls, and, unless
--no-http, as many times through the real API (create_app served by uvicorn on a Unix socket in
this process, an httpx client): p50, p99 and max in milliseconds. The goal: p99 under 50 ms for
every query at 100,000 devices. Last, scans of --scan addresses (a site's /16, a device at every
address by default: --density) stored completed and merged as the daemon merges one
(scan/inventory.py, on the store's threads): first, again unchanged, then with changes (devices
gone and new, ports opened and closed, versions changed, hosts moved to free addresses): the time
each merge takes to read the stored result, compare, and write the inventory, its changes and
their events; and how long its longest write held the writer thread, its longest read the store.

Exit status: 0 when every query's p99 is under the goal (with --smoke, whenever it ran), else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import structlog
import uvicorn

from netscand import compose
from netscand.api import create_app, listener
from netscand.config import PolicyConfig
from netscand.engine.shm import Shared
from netscand.lab.harness import bench_exit, parse_bench_args, print_bench_footer
from netscand.scan.dispatch import Dispatcher
from netscand.scan.events import Events
from netscand.scan.inventory import Inventory
from netscand.scan.limits import Limits
from netscand.scan.orchestrator import Orchestrator
from netscand.scan.policy import Policy
from netscand.store import Store, devices, sites
from netscand.store.compare import Covered
from netscand.store.devices import Filters
from netscand.store.inventory import merge
from netscand.store.threads import StoreThreads

T = TypeVar("T")
GOAL_MS = 50.0
PER_PAGE = 25
SPACE = ipaddress.ip_network("198.18.0.0/15")  # where every site's addresses are drawn from (data only)
FIRST, SECOND, LATER = "2026-11-01T08:00:00Z", "2026-11-15T08:00:00Z", "2026-12-01T08:00:00Z"
SMOKE = {"devices": 3000, "queries": 20, "scan": 4096}
# (port, protocol, service, product, versions, weight): what the spread of open ports is drawn from
SERVICES = [
    (22, "tcp", "ssh", "OpenSSH", ["7.4", "8.2p1", "8.9p1", "9.2p1", "9.6p1"], 30),
    (80, "tcp", "http", "nginx", ["1.18.0", "1.22.1", "1.24.0"], 25),
    (443, "tcp", "https", "Apache httpd", ["2.4.41", "2.4.57", "2.4.62"], 25),
    (445, "tcp", "microsoft-ds", None, [None], 15), (3389, "tcp", "ms-wbt-server", None, [None], 10),
    (53, "udp", "domain", "dnsmasq", ["2.85", "2.89"], 5), (161, "udp", "snmp", "net-snmp", ["5.9"], 8),
    (9100, "tcp", "jetdirect", None, [None], 5), (8080, "tcp", "http-proxy", "Jetty", ["9.4.53", "10.0.18"], 6),
    (3306, "tcp", "mysql", "MySQL", ["8.0.36"], 4), (5432, "tcp", "postgresql", "PostgreSQL", ["15.4", "16.1"], 4),
    (25, "tcp", "smtp", "Postfix smtpd", [None], 3), (631, "tcp", "ipp", "CUPS", ["2.4"], 3),
]
OSES = [("Linux 5.x", 20), ("Linux 6.x", 20), ("Windows 10", 15), ("Windows 11", 15), ("Windows Server 2019", 5),
        ("macOS 14", 5), ("FreeBSD 13", 2), ("Cisco IOS", 3), (None, 15)]
VENDORS = [("00:1B:21", "Intel Corporate"), ("00:14:22", "Dell Inc."), ("3C:D9:2B", "Hewlett Packard"),
           ("F0:18:98", "Apple, Inc."), ("00:1A:A1", "Cisco Systems, Inc"), ("B8:27:EB", "Raspberry Pi Foundation")]
SEVERITIES = ("low", "medium", "high", "critical")
ROLES = ("ws", "srv", "printer", "cam", "ap", "db", "nas")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=100_000)
    p.add_argument("--sites", type=int, default=20)
    p.add_argument("--queries", type=int, default=200, help="runs of each query, each way")
    p.add_argument("--scan", type=int, default=65_536, help="addresses of the merged scan (a power of 2)")
    p.add_argument("--density", type=float, default=0.9, help="share of the merged scan's addresses with a device")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-http", action="store_true", help="only through the store function")
    p.add_argument("--merges-only", action="store_true", help="fill the store, then only the scan's merges")
    return parse_bench_args(p, SMOKE, argv)


# --- the data ---------------------------------------------------------------------------------------

class Fleet:
    """Synthetic scan results, drawn from one seed."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.cves = [(f"CVE-{self.rnd.randint(2015, 2025)}-{self.rnd.randint(1000, 49999)}",
                      self.rnd.choices(SEVERITIES, (2, 5, 4, 1))[0]) for _ in range(600)]
        self.serial = 0

    def device(self, ip: str, site: str) -> dict[str, Any]:
        rnd, self.serial = self.rnd, self.serial + 1
        oui, vendor = rnd.choice(VENDORS)
        on_link = rnd.random() < 0.8
        randomized = on_link and rnd.random() < 0.1
        mac = f"{'02' if randomized else oui[:2]}{oui[2:]}:{self.serial >> 16 & 255:02X}:" \
              f"{self.serial >> 8 & 255:02X}:{self.serial & 255:02X}" if on_link else None
        return {"ip": ip, "mac": mac, "vendor": (vendor if not randomized else "Randomized (locally administered)")
                if on_link else None,
                "hostname": f"{rnd.choice(ROLES)}-{self.serial}.{site}.example" if rnd.random() < 0.6 else None,
                "os_guess": rnd.choices(*zip(*OSES))[0], "ports": self.ports()}

    def ports(self) -> list[dict[str, Any]]:
        rnd = self.rnd
        chosen = {s[:2]: s for s in rnd.choices(SERVICES, [s[5] for s in SERVICES], k=rnd.randint(1, 5))}
        return [self.port(*service[:5]) for _, service in sorted(chosen.items())]

    def port(self, number: int, protocol: str, service: str, product: str | None, versions: list) -> dict[str, Any]:
        entry: dict[str, Any] = {"port": number, "protocol": protocol, "state": "open", "service": service}
        version = self.rnd.choice(versions)
        entry |= {k: v for k, v in (("product", product), ("version", version)) if v}
        if product and version and self.rnd.random() < 0.25:
            entry["cves"] = [{"id": cve, "status": "vulnerable", "severity": severity, "cvss": 5.0}
                             for cve, severity in self.rnd.sample(self.cves, self.rnd.randint(1, 4))]
        return entry


def covered(network: ipaddress.IPv4Network) -> Covered:
    return Covered(((int(network.network_address), int(network.broadcast_address)),),
                   frozenset(s[0] for s in SERVICES if s[1] == "tcp"),
                   frozenset(s[0] for s in SERVICES if s[1] == "udp"), services=True, cves=True)


def sizes(total: int, count: int, rnd: random.Random) -> list[int]:
    """How many devices each site has: a few large sites, many small ones."""
    weights = [rnd.paretovariate(1.2) for _ in range(count)]
    shares = sorted((int(total * w / sum(weights)) for w in weights), reverse=True)
    shares[0] += total - sum(shares)
    return shares


def fill(store: Store, args: argparse.Namespace, fleet: Fleet) -> list[str]:
    """The sites and their devices, through sites.create and inventory.merge; the site ids."""
    made = []
    for i, count in enumerate(sizes(args.devices, args.sites, fleet.rnd)):
        site_id = store.call("bench", sites.create, f"site {i}")["id"]
        made.append(site_id)
        addresses = sorted(fleet.rnd.sample(range(SPACE.num_addresses), min(count, SPACE.num_addresses)))
        found = [fleet.device(str(SPACE[n]), f"s{i}") for n in addresses]
        for at, scanned in ((FIRST, found), (LATER, [d for d in found if fleet.rnd.random() < 0.9])):
            if at == LATER and i % 3:
                continue  # a third of the sites are scanned again
            store.call("bench", merge, scan_id=str(uuid.uuid4()), site_id=site_id, found=scanned,
                       covered=covered(SPACE), at=at)
    return made


# --- the queries ------------------------------------------------------------------------------------

def queries(db_store: Store, made: list[str], rnd: random.Random) -> dict[str, Filters]:
    sample = db_store.call("bench", lambda db: next(db.query(
        "SELECT cve_id FROM inventory_cves GROUP BY cve_id ORDER BY count(*) DESC LIMIT 1"))["cve_id"])
    small = made[-1]
    return {
        "all": Filters(), "site (largest)": Filters(site_id=made[0]), "site (smallest)": Filters(site_id=small),
        "address /24": Filters(network=ipaddress.ip_network("198.18.7.0/24")),
        "address /16": Filters(network=ipaddress.ip_network("198.19.0.0/16")),
        "address one": Filters(network=ipaddress.ip_network("198.18.7.9/32")),
        "q hostname": Filters(text="printer-"), "q vendor": Filters(text="apple"),
        "q none": Filters(text="no-such-host"), "port 22": Filters(port=22),
        "port 161/udp": Filters(port=161, protocol="udp"), "service ssh": Filters(service="ssh"),
        "product nginx": Filters(product="nginx"), "os windows": Filters(os="windows"),
        "os rare": Filters(os="ios"), "cve": Filters(cve=sample),
        "severity critical": Filters(min_severity=4), "severity low+": Filters(min_severity=1),
        "seen since": Filters(seen_since="2026-11-15T00:00:00Z"),
        "not seen since": Filters(not_seen_since="2026-11-15T00:00:00Z"), "gone": Filters(present=False),
        "site+port": Filters(site_id=made[0], port=443), "site+q+severity": Filters(site_id=made[1], text="srv",
                                                                                  min_severity=3),
        "port+address": Filters(port=9100, network=ipaddress.ip_network("198.18.0.0/20")),
        "product+os": Filters(product="openssh", os="linux"),
        "service+gone": Filters(service="https", present=False),
        "port 22+address /16": Filters(port=22, network=ipaddress.ip_network("198.19.0.0/16")),
        "service+address /15": Filters(service="ssh", network=ipaddress.ip_network("198.18.0.0/15")),
    }


def params(f: Filters) -> dict[str, str]:
    """The query string of GET /api/v1/devices that says `f`."""
    shown = {"site_id": f.site_id, "address": f.network and str(f.network), "q": f.text, "service": f.service,
             "product": f.product, "os": f.os, "cve": f.cve, "seen_since": f.seen_since,
             "not_seen_since": f.not_seen_since,
             "min_severity": f.min_severity and SEVERITIES[f.min_severity - 1],
             "present": None if f.present is None else str(f.present).lower(),
             "port": f.port and f"{f.port}{'/' + f.protocol if f.protocol else ''}"}
    return {k: str(v) for k, v in shown.items() if v is not None}


def timed(runs: int, call: Callable[[int], int]) -> tuple[list[float], int]:
    """Milliseconds of each run of call(page), pages 1-5 in turn; the total matches."""
    took, total = [], 0
    for n in range(runs):
        began = time.perf_counter()
        total = call(n % 5 + 1)
        took.append((time.perf_counter() - began) * 1000)
    return sorted(took), total


def p(took: list[float], q: float) -> float:
    return took[min(len(took) - 1, int(q * len(took)))]


# --- the API on a Unix socket -----------------------------------------------------------------------

@contextmanager
def served(store: Store, directory: Path) -> Iterator[httpx.Client]:
    """The daemon's app over `store` on a Unix socket, as the control process serves it; no
    engine worker (the device routes read the store only)."""
    limits = Limits(rate=1000.0, retries=1, max_running=0, policy=Policy.from_config(PolicyConfig()))
    orchestrator = Orchestrator(store, Dispatcher(Shared(1)), limits, compose.cve_matching(directory / "cve.db"))
    socket_path = directory / "api.sock"
    app = listener(create_app(orchestrator, store), "unix")
    server = uvicorn.Server(uvicorn.Config(app, uds=str(socket_path), lifespan="off", log_config=None,
                                           access_log=False))
    thread = threading.Thread(target=asyncio.run, args=(server.serve(),), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        with httpx.Client(base_url="http://netscand", transport=httpx.HTTPTransport(uds=str(socket_path))) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


def run_queries(store: Store, client: httpx.Client | None, named: dict[str, Filters], runs: int) -> bool:
    print(f"{'query':<20} {'matches':>8} | {'store p50':>9} {'p99':>7} {'max':>7} |"
          + (f" {'HTTP p50':>9} {'p99':>7} {'max':>7}" if client else ""))
    met = True
    for name, f in named.items():
        took, total = timed(runs, lambda page: store.call("bench", devices.page, f, page, PER_PAGE)[1])
        line = f"{name:<20} {total:>8} | {p(took, .5):>9.2f} {p(took, .99):>7.2f} {took[-1]:>7.2f} |"
        met &= p(took, .99) < GOAL_MS
        if client is not None:
            def get(page: int) -> int:
                r = client.get("/api/v1/devices", params={**params(f), "page": page, "per_page": PER_PAGE})
                r.raise_for_status()
                return int(r.json()["total"])
            http, http_total = timed(runs, get)
            assert http_total == total, (name, http_total, total)
            line += f" {p(http, .5):>9.2f} {p(http, .99):>7.2f} {http[-1]:>7.2f}"
            met &= p(http, .99) < GOAL_MS
        print(line)
    return met


# --- the scan's merge -------------------------------------------------------------------------------

class TimedStore(Store):
    """A store that times each call: how long each held it, and which were the writer's."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.held: list[tuple[float, str, str]] = []  # (seconds, thread, function)

    def call(self, doing: str, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        began = time.perf_counter()
        try:
            return super().call(doing, query, *args, **kwargs)
        finally:
            self.held.append((time.perf_counter() - began, threading.current_thread().name,
                              getattr(query, "__name__", "?")))


def merge_scan(store: TimedStore, fleet: Fleet, addresses: int, density: float) -> None:
    """A site's /16 (or --scan addresses) holding --density as many devices, scanned three times:
    first (every device new), again unchanged, then with changes; each scan stored completed with
    its result and merged as Live merges one (scan/inventory.py Inventory.merge_scan: reads and
    comparison on a reader thread, the writes on the writer); each merge's wall time, its
    longest write (the writer thread held) and its longest read (the store held by a reader)."""
    network = ipaddress.ip_network(f"198.18.0.0/{32 - addresses.bit_length() + 1}")
    site_id = store.call("bench", sites.create, "merged scan")["id"]
    rnd = fleet.rnd
    numbers = sorted(rnd.sample(range(network.num_addresses), int(network.num_addresses * density)))
    before = [fleet.device(str(network[n]), "m") for n in numbers]
    free = sorted(set(range(network.num_addresses)) - set(numbers))
    rnd.shuffle(free)
    after = []
    for device in before:
        roll = rnd.random()
        if roll < 0.02:
            continue  # gone
        if roll < 0.06:
            device = device | {"ports": fleet.ports()}  # ports opened and closed, versions changed
        elif roll < 0.07 and device["mac"] and free:
            device = device | {"ip": str(network[free.pop()])}  # moved, to an address no device had
        after.append(device)
    after += [fleet.device(str(network[free.pop()]), "m") for _ in range(min(len(before) // 50, len(free)))]
    after.sort(key=lambda d: int(ipaddress.IPv4Address(d["ip"])))
    for label, found, at in (("first", before, FIRST), ("unchanged", before, SECOND), ("changed", after, LATER)):
        scan_id = str(uuid.uuid4())
        store.create_scan({"id": scan_id, "target": str(network), "profile": "normal", "owner": "bench",
                           "status": "completed", "site_id": site_id})
        store.put_devices(scan_id, found)
        store.put_cves(scan_id, found, {"cve_data": {"loaded": True}})
        store.held.clear()
        began = time.perf_counter()
        changes = asyncio.run(merged(store, scan_id, covered(network), at))
        took = time.perf_counter() - began
        kinds: dict[str, int] = {}
        for change in changes:
            kinds[change["kind"]] = kinds.get(change["kind"], 0) + 1
        print(f"merge_scan of a {network.num_addresses:,}-address scan, {label} ({len(found):,} devices found): "
              f"{took:.2f} s, {len(changes):,} changes")
        writes = [h for h in store.held if h[1].startswith("store-write")]
        reads = [h for h in store.held if not h[1].startswith("store-write")]
        longest, read = max(writes), max(reads)
        print(f"  writer held at most {longest[0]:.2f} s ({longest[2]}, {len(writes)} writes in all); "
              f"a read held the store at most {read[0]:.2f} s ({read[2]}, {len(reads)} reads)")
        if kinds:
            print("  " + ", ".join(f"{kind} {n:,}" for kind, n in sorted(kinds.items())))


async def merged(store: Store, scan_id: str, covered: Covered, at: str) -> list[dict[str, Any]]:
    io = StoreThreads()
    return await Inventory(store, io, Events(store, io)).merge_scan(scan_id, covered, at)


def main() -> int:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress when piped
    # The API's access log (a line per request) would bury the figures; warnings still show.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    fleet = Fleet(args.seed)
    with tempfile.TemporaryDirectory(prefix="nsinv") as tmp:
        directory = Path(tmp)
        store = TimedStore(directory / "netscand.db")
        try:
            began = time.perf_counter()
            made = fill(store, args, fleet)
            count = store.call("bench", lambda db: next(db.query("SELECT count(*) AS n FROM inventory"))["n"])
            print(f"inventory: {count:,} devices in {args.sites} sites, written through inventory.merge in "
                  f"{time.perf_counter() - began:.1f} s" + ("" if args.merges_only else
                                                           f"; {args.queries} runs of each query, pages 1-5 of {PER_PAGE}"))
            named = queries(store, made, fleet.rnd)  # drawn even if not run: the merged scan's devices stay the same
            met = True
            if not args.merges_only:
                if args.no_http:
                    met = run_queries(store, None, named, args.queries)
                else:
                    with served(store, directory) as client:
                        met = run_queries(store, client, named, args.queries)
                print(f"goal (p99 under {GOAL_MS:.0f} ms for every query): {'met' if met else 'NOT met'}")
            merge_scan(store, fleet, args.scan, args.density)
        finally:
            store.close()
    print_bench_footer()
    return 0 if met or args.smoke else 1


if __name__ == "__main__":
    bench_exit(main)
