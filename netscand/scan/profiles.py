"""The scan profiles, one declarative table, and how a validated request resolves into an engine spec.

Whatever names or describes a profile derives from PROFILES: resolve() below, the API's
validation and OpenAPI document, the CLI choices and the README's table (`markdown_table`,
which a test compares with README.md). Adding a profile is one entry.

Kept light to import (spec.py, with the engine's plan module, is imported where a spec is
built): netscanctl reads the names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from netscand.scan.ports import DEEP_UDP_TOP, deep_udp_ports, parse_ports, top_ports

if TYPE_CHECKING:
    from netscand.scan.spec import Discovery, ScanSpec
    from netscand.scan.targets import Targets

REQUEST: Literal["request"] = "request"  # a setting the request decides, through its own fields
ALL: Literal["all"] = "all"
PAYLOADS: Literal["payloads"] = "payloads"  # UDP: the top ports and every port with a protocol payload

Choice = bool | Literal["request"]


@dataclass(frozen=True)
class Profile:
    name: str
    summary: str  # one line: CLI help
    description: str  # the OpenAPI prose: what the code does today, nothing it will do
    ports: int | Literal["all", "request"]  # the top N TCP ports, 1-65535, or the request's `ports`
    # nmap's --host-timeout: a host unfinished after it is reported with what was found and
    # timed_out. REQUEST: the request's timeout_ms x retries, no budget without timeout_ms.
    host_budget_s: float | Literal["request"]
    discovery: bool  # ping sweep of routed targets first (on-link ones are found by ARP anyway)
    rate_cap: float | None  # probes per second at most, under the configured and requested rate
    pacing: Literal["steady"]  # the engine's token bucket at the rate, no jitter
    profiling: Choice  # vendor, OS guess, reverse DNS; REQUEST: enable_profiling
    service_detection: Choice  # connections to open ports, name queries to hosts; REQUEST: enable_profiling
    cve: Choice  # CVE matching of the services found; REQUEST: enable_cve_match
    # UDP port scan beside the TCP one: PAYLOADS (deep_udp_ports), REQUEST (the request's
    # udp_ports, none without them) or None. UDP name services that answer profiling's queries
    # are reported either way.
    udp: Literal["payloads", "request"] | None
    accepts: tuple[str, ...] = ()  # request fields that only this profile takes

    def __post_init__(self) -> None:
        # The table is what the code does: a value the engine cannot do yet is refused here, so
        # neither README.md's table nor the OpenAPI document can claim it.
        if self.pacing != "steady":
            raise ValueError(f"profile {self.name}: not implemented yet: pacing {self.pacing!r} (only 'steady' is)")

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

    def host_budget(self, timeout_ms: int | None, retries: int) -> float | None:
        if self.host_budget_s != REQUEST:
            return self.host_budget_s
        return timeout_ms * max(retries, 1) / 1000 if timeout_ms else None


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("quick", "top 100 ports, no profiling, 30 s per host",
            "The 100 most frequently open TCP ports, after a ping sweep of routed targets, at the "
            "configured rate; no device profiling (a port's service is the well-known name of its "
            "number); 30 s per host.",
            ports=100, host_budget_s=30, discovery=True, rate_cap=None, pacing="steady",
            profiling=False, service_detection=False, cve=False, udp=None),
    Profile("normal", "top 1000 ports, device profiling, 120 s per host",
            "The 1000 most frequently open TCP ports, after a ping sweep of routed targets, at the "
            "configured rate; then device profiling (vendor, OS guess, names by reverse DNS, mDNS, "
            "NetBIOS and SNMP) and service detection on each open port; 120 s per host.",
            ports=1000, host_budget_s=120, discovery=True, rate_cap=None, pacing="steady",
            profiling=True, service_detection=True, cve=False, udp=None),
    Profile("deep", "all 65535 TCP ports and the common UDP services, profiling, CVE matching, 600 s per host",
            f"TCP ports 1-65535 and {len(deep_udp_ports())} UDP ports (the {DEEP_UDP_TOP} most frequently "
            "open, and every other port the UDP probe has a protocol payload for), side by side at the configured rate, after a ping sweep of routed targets; then the device "
            "profiling and service detection of normal, the silent UDP ports of hosts that rate-limit "
            "their ICMP answers asked again at the host's pace (about 1.1 s per port, hosts side by "
            "side), and the services found matched against the daemon's CVE data; 600 s per host.",
            ports=ALL, host_budget_s=600, discovery=True, rate_cap=None, pacing="steady",
            profiling=True, service_detection=True, cve=True, udp=PAYLOADS),
    Profile("stealth", "top 1000 ports at 100 probes/s, no ping sweep, no connection",
            "The 1000 most frequently open TCP ports at 100 probes/s at most, without a ping sweep "
            "(on-link hosts are found by ARP, routed ones are all probed), in the same keyed random "
            "order and steady pacing as every profile. It completes no connection: vendor, OS guess "
            "and reverse DNS (asked of the resolver, never the targets) only; 300 s per host.",
            ports=1000, host_budget_s=300, discovery=False, rate_cap=100.0, pacing="steady",
            profiling=True, service_detection=False, cve=False, udp=None),
    Profile("custom", "the ports given, profiling on request",
            "The request's TCP ports (required) and udp_ports (if given), after a ping sweep of "
            "routed targets, at the configured rate; enable_profiling adds normal's device "
            "profiling and service detection, enable_cve_match deep's CVE matching. The per-host "
            "budget is timeout_ms x retries when timeout_ms is given, none otherwise.",
            ports=REQUEST, host_budget_s=REQUEST, discovery=True, rate_cap=None, pacing="steady",
            profiling=REQUEST, service_detection=REQUEST, cve=REQUEST, udp=REQUEST,
            accepts=("ports", "udp_ports", "enable_profiling", "enable_cve_match")),
)}
PROFILE_NAMES = tuple(PROFILES)
DEFAULT_PROFILE = "normal"  # of an API request that names none
ONE_SHOT_PROFILE = "quick"  # of `netscand scan` without --profile or --ports
# Request fields some profile takes for itself; every other profile refuses them, as it sets
# what they would choose.
PROFILE_ONLY_FIELDS = tuple(dict.fromkeys(f for p in PROFILES.values() for f in p.accepts))


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

    def options(self) -> dict:
        """What is stored with the scan besides target, profile and site."""
        return {k: v for k, v in self.__dict__.items()
                if k not in ("target", "profile", "site_id") and v is not None}


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
    return None


def resolve(req: ScanRequest, targets: Targets, rate: float, retries: int,
            ping: Discovery | None = None) -> ScanSpec:
    """The engine's view of a request: `rate`, `retries` and `ping` (default: nmap's probes)
    are the configured ones."""
    from netscand.scan.spec import Discovery, ScanSpec  # see the module's docstring

    profile = PROFILES[req.profile]
    rate = min([rate, *(cap for cap in (profile.rate_cap, req.rate) if cap is not None)])
    retries = retries if req.retries is None else req.retries
    sweep = profile.discovery and not req.skip_discovery
    cve = _chosen(profile.cve, req.enable_cve_match)  # needs service detection's CPEs: implies it
    return ScanSpec(targets, profile.port_list(req.ports), rate, retries, req.timeout_ms,
                    host_timeout_s=profile.host_budget(req.timeout_ms, retries), max_hosts=req.max_concurrent,
                    discovery=(ping or Discovery()) if sweep else None,
                    profiling=cve or _chosen(profile.profiling, req.enable_profiling),
                    detect_services=cve or _chosen(profile.service_detection, req.enable_profiling),
                    udp_ports=profile.udp_port_list(req.udp_ports), cve_match=cve)


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _or_request(value: object, from_request: str, shown: str) -> str:
    return from_request if value == REQUEST else shown


def _udp_cell(udp: str | None) -> str:
    if udp == PAYLOADS:
        return f"top {DEEP_UDP_TOP} + payload ports ({len(deep_udp_ports())})"
    return _or_request(udp, "`udp_ports`", "none")


# README.md's columns: header, and the cell of a profile.
_COLUMNS: dict[str, Callable[[Profile], str]] = {
    "profile": lambda p: p.name,
    "TCP ports": lambda p: _or_request(p.ports, "`ports`", "1-65535" if p.ports == ALL else f"top {p.ports}"),
    "ping sweep": lambda p: _yes(p.discovery),
    "rate cap": lambda p: "none" if p.rate_cap is None else f"{p.rate_cap:g} probes/s",
    "pacing": lambda p: p.pacing,
    "profiling": lambda p: _or_request(p.profiling, "`enable_profiling`", _yes(p.profiling is True)),
    "service detection": lambda p: _or_request(p.service_detection, "`enable_profiling`",
                                               _yes(p.service_detection is True)),
    "CVE": lambda p: _or_request(p.cve, "`enable_cve_match`", _yes(p.cve is True)),
    "UDP ports": lambda p: _udp_cell(p.udp),
    "per-host budget": lambda p: _or_request(p.host_budget_s, "`timeout_ms` × max(retries, 1)",
                                             f"{p.host_budget_s} s"),
}


def markdown_table() -> str:
    """README.md's table of the profiles, which a test compares with the file."""
    rows = [tuple(_COLUMNS), ("---",) * len(_COLUMNS)]
    rows += [tuple(cell(p) for cell in _COLUMNS.values()) for p in PROFILES.values()]
    return "".join("| " + " | ".join(row) + " |\n" for row in rows)
