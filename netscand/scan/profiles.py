"""Scan profiles (API.md's table) and how a validated request resolves into an engine spec."""

from __future__ import annotations

from dataclasses import dataclass

from netscand.scan.ports import parse_ports, top_ports
from netscand.scan.runner import Discovery, ScanSpec
from netscand.scan.targets import Targets

PROFILES = ("quick", "normal", "deep", "stealth", "custom")
STEALTH_RATE = 100.0
# API.md's per-host time budget (nmap's --host-timeout); custom's is timeout_ms x retries.
HOST_TIMEOUT_S = {"quick": 30, "normal": 120, "deep": 600, "stealth": 300}


@dataclass(frozen=True)
class ScanRequest:
    """A start request after the API (or the one-shot CLI) checked its shape and types."""

    target: str | list[str]
    profile: str = "normal"
    site_id: str | None = None
    ports: list[int | str] | None = None
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
    return Discovery(icmp, parse_ports(syn_ports) if syn_ports.strip() else (),
                     parse_ports(ack_ports) if ack_ports.strip() else ())


def profile_ports(req: ScanRequest) -> tuple[int, ...]:
    if req.profile == "quick":
        return top_ports(100)
    if req.profile in ("normal", "stealth"):
        return top_ports(1000)
    if req.profile == "deep":
        return tuple(range(1, 65536))
    return parse_ports(req.ports or [])


def resolve(req: ScanRequest, targets: Targets, rate: float, retries: int,
            discovery: Discovery = Discovery()) -> ScanSpec:
    """The engine's view of a request: `rate`, `retries` and `discovery` are the configured ones."""
    if req.profile == "stealth":
        rate = min(rate, STEALTH_RATE)
    if req.rate is not None:
        rate = min(req.rate, rate)
    retries = retries if req.retries is None else req.retries
    host_timeout: float | None = HOST_TIMEOUT_S.get(req.profile)
    if req.profile == "custom" and req.timeout_ms:
        host_timeout = req.timeout_ms * max(retries, 1) / 1000
    # Stealth sends no ping sweep: ARP alone finds on-link hosts, routed ones are all probed.
    skip = req.profile == "stealth" or bool(req.skip_discovery)
    custom_profiling = req.profile == "custom" and bool(req.enable_profiling)
    return ScanSpec(targets, profile_ports(req), rate, retries, req.timeout_ms,
                    host_timeout_s=host_timeout, max_hosts=req.max_concurrent,
                    discovery=None if skip else discovery,
                    profiling=req.profile in ("normal", "deep", "stealth") or custom_profiling,
                    # Stealth completes no connection; quick names ports by their registration.
                    detect_services=req.profile in ("normal", "deep") or custom_profiling)
