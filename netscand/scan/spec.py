"""What one scan asks of the engine, resolved from a request and its profile (profiles.resolve)."""

from __future__ import annotations

from dataclasses import dataclass

from netscand.engine import plan as plans
from netscand.scan.profiles import mean_gap_s, paced_hosts_per_worker
from netscand.scan.targets import Targets


@dataclass(frozen=True)
class Discovery:
    """Host discovery for routed targets (on-link ones are found by ARP), as nmap's default
    -PE -PS443 -PA80: a host is up if anything answers. Each field asks for one engine probe
    type by name: which probes a sweep sends is the scan layer's choice (Planner._pings), so a
    new ping probe is a field here and a line there besides its engine module."""

    icmp_echo: bool = True
    syn_ports: tuple[int, ...] = (443,)
    ack_ports: tuple[int, ...] = (80,)


@dataclass(frozen=True)
class Pacing:
    """Per-host pacing (a paced scan): each host gets at most one probe per gap_ms +
    uniform[0, jitter_ms), from source ports spread over [sport_lo, sport_hi]."""

    gap_ms: int
    jitter_ms: int
    sport_lo: int
    sport_hi: int

    @property
    def mean_gap_s(self) -> float:
        return mean_gap_s(self.gap_ms, self.jitter_ms)


@dataclass(frozen=True)
class ScanSpec:
    targets: Targets
    ports: tuple[int, ...]
    rate: float
    retries: int
    timeout_ms: int | None = None  # fixed per-probe timeout; None adapts to measured RTT
    host_timeout_s: float | None = None  # a host still unfinished after this is reported timed out
    max_hosts: int | None = None  # hosts scanned at once (one plan); None: sized from the above
    discovery: Discovery | None = Discovery()  # None: probe every routed target (nmap's -Pn)
    profiling: bool = False  # vendor and OS guess for the devices found
    detect_services: bool = False  # connect to open ports to name service, product and version
    udp_ports: tuple[int, ...] = ()  # UDP port scan beside the TCP one, in the same plans' group
    cve_match: bool = False  # match the services found against the CVE data
    pacing: Pacing | None = None  # per-host pacing of the port scan; None: the rate alone (steady)
    # The rate is the ceiling of the engine's closed loop (engine/rate.py); False: the rate is
    # sent as it is (a rate the user chose; profiles.resolve)
    adaptive: bool = False

    @property
    def udp_sends(self) -> int:
        """Probes sent per UDP port, as the rate split and the plan size count them: nearly
        every UDP port stays silent (open|filtered: no reply, and hosts rate-limit their port
        unreachables), so it is sent 1 + retries times, where a TCP port's first SYN is nearly
        always answered (a RST when closed)."""
        return 1 + self.retries

    def hosts_per_plan(self, workers: int) -> int:
        """Hosts of one plan are scanned together, so a plan must fit the per-host budget at the
        scan's rate (with half the budget left for retries and slow replies); the TCP and UDP
        plans of those hosts run side by side, sharing the rate. A paced plan is the hosts
        `workers` can pace at once (paced_hosts)."""
        nports = max(len(self.ports), len(self.udp_ports))
        limit = plans.Plan.capacity(nports)
        if self.max_hosts:
            limit = min(limit, self.max_hosts)
        if self.pacing:
            limit = min(limit, self.paced_hosts(nports, workers))
        elif self.host_timeout_s:
            probes = len(self.ports) + len(self.udp_ports) * self.udp_sends
            limit = min(limit, int(self.host_timeout_s * self.rate / 2 / probes))
        return max(1, limit)

    def paced_hosts(self, nports: int, workers: int) -> int:
        """Hosts a paced plan takes: those the rate keeps at their gap (rate x mean gap; more
        would only stretch every host's gap), and no more than the workers pace at once
        (paced_hosts_per_worker: a shard waiting its turn would wait for hours). Its budget, in
        probes (Plan.silent_probes), bounds no pass."""
        assert self.pacing is not None
        return min(workers * paced_hosts_per_worker(nports), int(self.rate * self.pacing.mean_gap_s))
