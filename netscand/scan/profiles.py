"""The scan profiles, one declarative table, and how a validated request resolves into an engine spec.

Whatever names or describes a profile derives from PROFILES: resolve() below, the API's
validation and OpenAPI document, the CLI choices and the README's table (`markdown_table`,
which a test compares with README.md). Adding a profile is one entry.

Kept light to import (spec.py, with the engine's plan module, is imported where a spec is
built): netscanctl reads the names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from netscand.engine.shm import PLAN_SHARDS, SHARD_MAX
from netscand.scan.ports import (
    DEEP_UDP_TOP,
    by_frequency,
    deep_udp_ports,
    kernel_source_ports,
    parse_ports,
    source_port_range,
    top_ports,
)

if TYPE_CHECKING:
    from netscand.scan.spec import Discovery, Pacing, ScanSpec
    from netscand.scan.targets import Targets

REQUEST: Literal["request"] = "request"  # a setting the request decides, through its own fields
ALL: Literal["all"] = "all"
PAYLOADS: Literal["payloads"] = "payloads"  # UDP: the top ports and every port with a protocol payload

Choice = bool | Literal["request"]
PER_HOST: Literal["per-host"] = "per-host"  # each host one probe per gap (+ jitter) at most
STEADY: Literal["steady"] = "steady"  # the engine's token bucket at the rate, no per-host gap
# Per-host pacing's fields: host_gap_ms turns it on for a profile whose pacing is REQUEST; the
# others mean something only with it.
GAP_FIELD = "host_gap_ms"
PACED_FIELDS = ("jitter_ms", "source_ports")
# Request fields' bounds, as the API's schema and the one-shot CLI check them (past them a plan
# cannot carry the value). A paced host's gap and jitter: up to an hour (paranoid's gap is five
# minutes).
TIMEOUT_MS = (1, 600_000)
RETRIES = (0, 10)
HOST_GAP_MS = (1, 3_600_000)
JITTER_MS = (0, 3_600_000)
# A paced scan's budget, in probes: a host that answers none of its most frequently open ports
# (its first probes: ports.by_frequency) is given up (Plan.silent_probes). Counted in seconds,
# the budget gave up a host behind a DROP firewall with a few open ports after ~75 probes at
# quiet, and at sneaky or paranoid nearly always before its first answer.
PACED_SILENT_PORTS = 100


def mean_gap_s(gap_ms: int, jitter_ms: int) -> float:
    """A paced host's mean wait between probes: the gap plus the mean of its uniform jitter."""
    return (gap_ms + jitter_ms / 2) / 1000


def paced_hosts_per_worker(nports: int) -> int:
    """The hosts of `nports` ports one engine worker paces at once: a paced pass lasts the whole
    plan, so all its shards (whole hosts each, SHARD_MAX probes at most) send together, and a
    worker holds PLAN_SHARDS of one plan (195 hosts at 1000 ports)."""
    return PLAN_SHARDS * max(1, SHARD_MAX // nports)


@dataclass(frozen=True)
class StealthLevel:
    """A named pace of a per-host paced profile (the names are nmap's slow timing templates'):
    each host gets one probe per gap_ms + uniform[0, jitter_ms), the scan rate_cap probes/s at
    most, and an unanswered probe is sent `retries` more times, paced like the first."""

    name: str
    gap_ms: int
    jitter_ms: int
    rate_cap: float
    retries: int

    @property
    def mean_gap_s(self) -> float:
        return mean_gap_s(self.gap_ms, self.jitter_ms)


# Each gap is above the 3 s between ports within which threshold detectors (scanlogd, xt_psd)
# add a source's probes up.
STEALTH_LEVELS: dict[str, StealthLevel] = {level.name: level for level in (
    StealthLevel("quiet", 3500, 1000, 100.0, 1),
    StealthLevel("sneaky", 15000, 5000, 20.0, 1),
    StealthLevel("paranoid", 300000, 60000, 1.0, 1),
)}
LEVEL_NAMES = tuple(STEALTH_LEVELS)
DEFAULT_LEVEL = "quiet"


def _pace(level: StealthLevel) -> str:
    return f"{level.gap_ms / 1000:g}-{(level.gap_ms + level.jitter_ms) / 1000:g} s"


def _levels_prose() -> str:
    return "; ".join(f"{v.name}: {v.gap_ms / 1000:g} s + 0-{v.jitter_ms / 1000:g} s, {per_second(v.rate_cap)}, "
                     f"{v.retries} {'retry' if v.retries == 1 else 'retries'} paced like the first probe"
                     for v in STEALTH_LEVELS.values())


def _duration(seconds: float) -> str:
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"about {hours} h {minutes:02} min" if hours else f"about {minutes} min"


def per_second(rate: float) -> str:
    return f"{rate:g} probe/s" if rate == 1 else f"{rate:g} probes/s"


# A paced scan's budget, as the stealth profile's description and the docs say it.
_QUIET = STEALTH_LEVELS[DEFAULT_LEVEL]
_PACED_BUDGET = (
    f"The budget is counted in probes, not seconds: each host's {PACED_SILENT_PORTS} most frequently "
    "open ports are sent first (in a keyed random order among themselves, the other ports after "
    "them), and a host that answers none of them is given up; a host that answers is probed to "
    f"its last port at its pace ({_duration(1000 * _QUIET.mean_gap_s)} for 1000 ports at "
    f"{DEFAULT_LEVEL}, up to {1 + _QUIET.retries}× that for a host that drops most ports, "
    "as its retry round is paced too).")


@dataclass(frozen=True)
class Profile:
    name: str
    summary: str  # one line: CLI help
    description: str  # the OpenAPI prose: what the code does today, nothing it will do
    ports: int | Literal["all", "request"]  # the top N TCP ports, 1-65535, or the request's `ports`
    # nmap's --host-timeout: a host unfinished after it is reported with what was found and
    # timed_out. REQUEST: the request's timeout_ms x retries, no budget without timeout_ms.
    # None: a paced profile's, counted in probes (PACED_SILENT_PORTS), not seconds.
    host_budget_s: float | Literal["request"] | None
    discovery: bool  # ping sweep of routed targets first (on-link ones are found by ARP anyway)
    rate_cap: float | None  # probes per second at most, under the configured and requested rate
    # STEADY, PER_HOST (at the request's stealth_level, else DEFAULT_LEVEL: its gap, jitter,
    # rate cap and retries, each overridden by the request's own field) or REQUEST (per host
    # with the request's host_gap_ms, else steady).
    pacing: Literal["steady", "per-host", "request"]
    profiling: Choice  # vendor, OS guess, reverse DNS; REQUEST: enable_profiling
    service_detection: Choice  # connections to open ports, name queries to hosts; REQUEST: enable_profiling
    cve: Choice  # CVE matching of the services found; REQUEST: enable_cve_match
    # UDP port scan beside the TCP one: PAYLOADS (deep_udp_ports), REQUEST (the request's
    # udp_ports, none without them) or None. UDP name services that answer profiling's queries
    # are reported either way.
    udp: Literal["payloads", "request"] | None
    accepts: tuple[str, ...] = ()  # request fields that only this profile (and others listing them) takes

    @property
    def requires(self) -> tuple[str, ...]:
        """Request fields this profile cannot do without."""
        return ("ports",) if self.ports == REQUEST else ()

    def port_list(self, requested: list[int | str] | None) -> tuple[int, ...]:
        if self.ports == ALL:
            return tuple(range(1, 65536))
        if self.ports == REQUEST:
            return parse_ports(requested or [])
        return top_ports(self.ports)

    def udp_port_list(self, requested: list[int | str] | None) -> tuple[int, ...]:
        if self.udp == PAYLOADS:
            return deep_udp_ports()
        if self.udp == REQUEST and requested:
            return parse_ports(requested)
        return ()

    def host_budget(self, timeout_ms: int | None, retries: int, paced: bool) -> float | None:
        """Seconds after which an unfinished host is timed out; none in a paced scan, whose
        budget is counted in probes (a host is probed to its last port at its pace)."""
        if paced:
            return None
        if self.host_budget_s != REQUEST:
            return self.host_budget_s
        return timeout_ms * max(retries, 1) / 1000 if timeout_ms else None

    def level(self, requested: str | None) -> StealthLevel | None:
        """The stealth level a request runs at: a per-host paced profile's only."""
        return STEALTH_LEVELS[requested or DEFAULT_LEVEL] if self.pacing == PER_HOST else None


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("quick", "top 100 ports, no profiling, 30 s per host",
            "The 100 most frequently open TCP ports, after a ping sweep of routed targets, at the "
            "configured rate; no device profiling (a port's service is the well-known name of its "
            "number); 30 s per host.",
            ports=100, host_budget_s=30, discovery=True, rate_cap=None, pacing=STEADY,
            profiling=False, service_detection=False, cve=False, udp=None),
    Profile("normal", "top 1000 ports, device profiling, 120 s per host",
            "The 1000 most frequently open TCP ports, after a ping sweep of routed targets, at the "
            "configured rate; then device profiling (vendor, OS guess, names by reverse DNS, mDNS, "
            "NetBIOS and SNMP) and service detection on each open port; 120 s per host.",
            ports=1000, host_budget_s=120, discovery=True, rate_cap=None, pacing=STEADY,
            profiling=True, service_detection=True, cve=False, udp=None),
    Profile("deep", "all 65535 TCP ports and the common UDP services, profiling, CVE matching, 600 s per host",
            f"TCP ports 1-65535 and {len(deep_udp_ports())} UDP ports (the {DEEP_UDP_TOP} most frequently "
            "open, and every other port the UDP probe has a protocol payload for), side by side at the configured rate, after a ping sweep of routed targets; then the device "
            "profiling and service detection of normal, the silent UDP ports of hosts that rate-limit "
            "their ICMP answers asked again at the host's pace (about 1.1 s per port, hosts side by "
            "side), and the services found matched against the daemon's CVE data; 600 s per host.",
            ports=ALL, host_budget_s=600, discovery=True, rate_cap=None, pacing=STEADY,
            profiling=True, service_detection=True, cve=True, udp=PAYLOADS),
    Profile("stealth", f"top 1000 ports, each host one SYN per {_pace(STEALTH_LEVELS[DEFAULT_LEVEL])} "
            f"({DEFAULT_LEVEL}), no ping sweep, no connection",
            "The 1000 most frequently open TCP ports, each host paced on its own: at most one probe "
            f"per gap plus a random jitter (stealth_level {_levels_prose()}; host_gap_ms, jitter_ms, "
            "rate and retries set their own), many hosts interleaved so that the rate is used. Each "
            "host's ports go in a keyed random order of its own, the hosts from keyed random starts. "
            "Each SYN is shaped like the scanning host's own connect() SYN (TTL, window, DF, TCP "
            "option kinds and order, timestamps, IP ID), from source ports spread over the kernel's "
            "ephemeral range (source_ports). No ping sweep (on-link hosts are found by ARP, routed "
            "ones are all probed) and no connection completed (the scanning host's kernel answers a "
            "SYN-ACK with a RST): vendor, OS guess and reverse DNS (asked of the resolver, never the "
            f"targets) only. {_PACED_BUDGET}",
            ports=1000, host_budget_s=None, discovery=False, rate_cap=None, pacing=PER_HOST,
            profiling=True, service_detection=False, cve=False, udp=None,
            accepts=("stealth_level", GAP_FIELD, *PACED_FIELDS)),
    Profile("custom", "the ports given, profiling on request",
            "The request's TCP ports (required) and udp_ports (if given), after a ping sweep of "
            "routed targets, at the configured rate; enable_profiling adds normal's device "
            "profiling and service detection, enable_cve_match deep's CVE matching. The per-host "
            "budget is timeout_ms x retries when timeout_ms is given, none otherwise. host_gap_ms "
            "paces each host as stealth does (with jitter_ms, 0 unless given, and source_ports), "
            "its TCP ports probed by stealth's kernel-shaped SYN and its UDP ports after them, each "
            "list in frequency order (the ports ranked most frequently open first, in rank order, "
            "the others after them in port order); the budget is then stealth's, in probes: a host "
            f"that answers none of its first {PACED_SILENT_PORTS} ports of that order is given up.",
            ports=REQUEST, host_budget_s=REQUEST, discovery=True, rate_cap=None, pacing=REQUEST,
            profiling=REQUEST, service_detection=REQUEST, cve=REQUEST, udp=REQUEST,
            accepts=("ports", "udp_ports", "enable_profiling", "enable_cve_match", GAP_FIELD, *PACED_FIELDS)),
)}
PROFILE_NAMES = tuple(PROFILES)
DEFAULT_PROFILE = "normal"  # of an API request that names none
ONE_SHOT_PROFILE = "quick"  # of `netscand scan` without --profile or --ports


def accepting(field: str) -> tuple[str, ...]:
    """The names of the profiles that take `field`, one of PROFILE_ONLY_FIELDS (the others refuse it)."""
    return tuple(p.name for p in PROFILES.values() if field in p.accepts)


def requiring(field: str) -> tuple[str, ...]:
    """The names of the profiles that cannot do without `field`."""
    return tuple(p.name for p in PROFILES.values() if field in p.requires)


def taking(field: str) -> Profile:
    """The one profile that accepts `field` (e.g. the one-shot CLI's --ports implies it)."""
    (name,) = accepting(field)
    return PROFILES[name]


@dataclass(frozen=True)
class ScanRequest:
    """A start request after the API (or the one-shot CLI) checked its shape and types."""

    target: str | list[str]
    profile: str = DEFAULT_PROFILE
    site_id: str | None = None
    ports: list[int | str] | None = None
    udp_ports: list[int | str] | None = None
    timeout_ms: int | None = None
    max_concurrent: int | None = None
    enable_profiling: bool | None = None
    enable_cve_match: bool | None = None
    rate: float | None = None
    retries: int | None = None
    skip_discovery: bool | None = None
    stealth_level: str | None = None
    host_gap_ms: int | None = None
    jitter_ms: int | None = None
    source_ports: str | None = None

    def options(self) -> dict:
        """What is stored with the scan besides target, profile and site."""
        return {k: v for k, v in self.__dict__.items()
                if k not in ("target", "profile", "site_id") and v is not None}

    @classmethod
    def stored(cls, scan: Mapping[str, Any]) -> ScanRequest:
        """The request a stored scan's row was made from (its options hold more than that)."""
        fields = cls.__dataclass_fields__
        return cls(scan["target"], scan["profile"], scan["site_id"],
                   **{k: v for k, v in scan["options"].items() if k in fields})


# Request fields some profiles take for themselves, in the request's order; every other profile
# refuses them, as it sets what they would choose.
PROFILE_ONLY_FIELDS = tuple(f for f in ScanRequest.__dataclass_fields__
                            if any(f in p.accepts for p in PROFILES.values()))


def discovery(icmp: bool, syn_ports: str, ack_ports: str) -> Discovery:
    """The configured ping probes; port lists as the config file writes them ("" for none)."""
    from netscand.scan.spec import Discovery  # see the module's docstring

    return Discovery(icmp, parse_ports(syn_ports) if syn_ports.strip() else (),
                     parse_ports(ack_ports) if ack_ports.strip() else ())


def _chosen(choice: Choice, requested: bool | None) -> bool:
    return bool(requested) if choice == REQUEST else bool(choice)


def contradiction(req: ScanRequest) -> tuple[str, str] | None:
    """(field, why) when the request asks for two things that can't go together. CVE matching
    reads the CPEs service detection finds, so it implies profiling (resolve): turned off by
    name, it would silently match nothing."""
    if req.enable_cve_match and req.enable_profiling is False:
        return "enable_cve_match", ("enable_cve_match needs enable_profiling (service detection finds "
                                    "the CPEs matched); leave enable_profiling out or true")
    if PROFILES[req.profile].pacing == REQUEST and req.host_gap_ms is None:
        for name in PACED_FIELDS:
            if getattr(req, name) is not None:
                return name, (f"{name} needs per-host pacing: give {GAP_FIELD} too, or use profile "
                              f"{' or '.join(pacing_profiles())}")
    return None


def pacing_profiles() -> tuple[str, ...]:
    """The names of the profiles that always pace each host."""
    return tuple(p.name for p in PROFILES.values() if p.pacing == PER_HOST)


def pacing(profile: Profile, req: ScanRequest) -> Pacing | None:
    """The per-host pacing a request runs at, if any: its level's, each part overridden by the
    request's own field; source ports by default where the kernel's own connect()s send from."""
    from netscand.scan.spec import Pacing  # see the module's docstring

    level = profile.level(req.stealth_level)
    gap = req.host_gap_ms or (level.gap_ms if level else None)
    if gap is None:
        return None
    jitter = req.jitter_ms if req.jitter_ms is not None else level.jitter_ms if level else 0
    lo, hi = source_port_range(req.source_ports) if req.source_ports else kernel_source_ports()
    return Pacing(gap, jitter, lo, hi)


def resolve(req: ScanRequest, targets: Targets, rate: float, retries: int,
            ping: Discovery | None = None, pinned: bool = False) -> ScanSpec:
    """The engine's view of a request: `rate`, `retries` and `ping` (default: nmap's probes)
    are the configured ones. The rate is the ceiling of the engine's closed loop (adaptive)
    unless someone chose it: the request's `rate`, a profile's or stealth level's cap, or
    `pinned` (the one-shot's --rate, given as `rate`) pin it; a paced scan keeps its hosts' pace."""
    from netscand.scan.spec import Discovery, ScanSpec  # see the module's docstring

    profile = PROFILES[req.profile]
    level = profile.level(req.stealth_level)
    caps = [cap for cap in (profile.rate_cap, level and level.rate_cap, req.rate) if cap is not None]
    rate = min([rate, *caps])
    retries = req.retries if req.retries is not None else level.retries if level else retries
    sweep = profile.discovery and not req.skip_discovery
    cve = _chosen(profile.cve, req.enable_cve_match)  # needs service detection's CPEs: implies it
    paced = pacing(profile, req)
    # A paced scan gives a silent host up after its first ports: the likeliest to answer first.
    ports, udp_ports = profile.port_list(req.ports), profile.udp_port_list(req.udp_ports)
    if paced:
        ports, udp_ports = by_frequency(ports, "tcp"), by_frequency(udp_ports, "udp")
    return ScanSpec(targets, ports, rate, retries, req.timeout_ms,
                    host_timeout_s=profile.host_budget(req.timeout_ms, retries, paced is not None),
                    max_hosts=req.max_concurrent,
                    discovery=(ping or Discovery()) if sweep else None,
                    profiling=cve or _chosen(profile.profiling, req.enable_profiling),
                    detect_services=cve or _chosen(profile.service_detection, req.enable_profiling),
                    udp_ports=udp_ports, cve_match=cve, pacing=paced,
                    adaptive=not (caps or pinned or paced))


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _or_request(value: object, from_request: str, shown: str) -> str:
    return from_request if value == REQUEST else shown


def _pacing_cell(p: Profile) -> str:
    if p.pacing == PER_HOST:
        return "per host: `stealth_level`"
    return _or_request(p.pacing, f"`{GAP_FIELD}`: per host", p.pacing)


def _rate_cell(p: Profile) -> str:
    if p.pacing == PER_HOST:
        return "`stealth_level`'s"
    return "none" if p.rate_cap is None else per_second(p.rate_cap)


def _budget_cell(p: Profile) -> str:
    if p.pacing == PER_HOST:
        return f"its top {PACED_SILENT_PORTS} ports, sent first: a host that answers none is given up"
    budget = _or_request(p.host_budget_s, "`timeout_ms` × max(retries, 1)", f"{p.host_budget_s} s")
    return f"{budget} (paced: as stealth)" if p.pacing == REQUEST else budget


def _udp_cell(udp: str | None) -> str:
    if udp == PAYLOADS:
        return f"top {DEEP_UDP_TOP} + payload ports ({len(deep_udp_ports())})"
    return _or_request(udp, "`udp_ports`", "none")


# README.md's columns: header, and the cell of a profile.
_COLUMNS: dict[str, Callable[[Profile], str]] = {
    "profile": lambda p: p.name,
    "TCP ports": lambda p: _or_request(p.ports, "`ports`", "1-65535" if p.ports == ALL else f"top {p.ports}"),
    "ping sweep": lambda p: _yes(p.discovery),
    "rate cap": _rate_cell,
    "pacing": _pacing_cell,
    "profiling": lambda p: _or_request(p.profiling, "`enable_profiling`", _yes(p.profiling is True)),
    "service detection": lambda p: _or_request(p.service_detection, "`enable_profiling`",
                                               _yes(p.service_detection is True)),
    "CVE": lambda p: _or_request(p.cve, "`enable_cve_match`", _yes(p.cve is True)),
    "UDP ports": lambda p: _udp_cell(p.udp),
    "per-host budget": _budget_cell,
}
# README.md's table of the stealth levels: header, and the cell of a level.
_LEVEL_COLUMNS: dict[str, Callable[[StealthLevel], str]] = {
    "stealth_level": lambda v: f"{v.name} (default)" if v.name == DEFAULT_LEVEL else v.name,
    "per-host gap": lambda v: f"{v.gap_ms / 1000:g} s",
    "jitter": lambda v: f"0-{v.jitter_ms / 1000:g} s",
    "rate cap": lambda v: per_second(v.rate_cap),
    "retries": lambda v: str(v.retries),
    # The rate keeps rate x mean gap hosts at their gap; the workers pace only so many at once.
    "hosts paced at once (top 1000)": lambda v: f"min({int(v.rate_cap * v.mean_gap_s)}, "
                                                 f"{paced_hosts_per_worker(1000)} × workers)",
    "top 1000 ports of a host": lambda v: f"{_duration(1000 * v.mean_gap_s)}, up to {1 + v.retries}× "
                                          "if it drops most ports",
}


def markdown_table() -> str:
    """README.md's table of the profiles, which a test compares with the file."""
    return _table(_COLUMNS, PROFILES.values())


def levels_table() -> str:
    """README.md's table of the stealth levels, which a test compares with the file."""
    return _table(_LEVEL_COLUMNS, STEALTH_LEVELS.values())


def _table(columns: Mapping[str, Callable[[Any], str]], items: Iterable[object]) -> str:
    rows = [tuple(columns), ("---",) * len(columns)]
    rows += [tuple(cell(item) for cell in columns.values()) for item in items]
    return "".join("| " + " | ".join(row) + " |\n" for row in rows)
