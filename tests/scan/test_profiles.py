"""The profile registry: what each profile resolves to, and everything that derives from the table."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from netscand import config, oneshot
from netscand.engine.shm import PLAN_SHARDS
from netscand.cli import ctl
from netscand.cli import scan as one_shot
from netscand.scan.ports import LINUX_EPHEMERAL, kernel_source_ports, top_ports
from netscand.scan.profiles import (
    PROFILE_NAMES,
    PROFILE_ONLY_FIELDS,
    PROFILES,
    STEALTH_LEVELS,
    ScanRequest,
    accepting,
    contradiction,
    levels_table,
    markdown_table,
    resolve,
    taking,
)
from netscand.scan.spec import Discovery, Pacing, ScanSpec
from netscand.scan.targets import parse_targets

ROOT = Path(__file__).resolve().parents[2]
TARGET = "198.18.0.1"
RATE = 50_000.0
PING = Discovery(True, (443,), (80,))


def _spec(profile: str, **fields: Any) -> ScanSpec:
    return resolve(ScanRequest(TARGET, profile, **fields), parse_targets(TARGET), RATE, 3, PING)


# What each fixed profile resolved to before the table existed (the original profile table).
@pytest.mark.parametrize("name, ports, budget, sweep, rate, profiling, services", [
    ("quick", top_ports(100), 30, True, RATE, False, False),
    ("normal", top_ports(1000), 120, True, RATE, True, True),
    ("deep", tuple(range(1, 65536)), 600, True, RATE, True, True),
    ("stealth", top_ports(1000), None, False, 100.0, True, False),  # quiet's cap; its budget in probes
])
def test_fixed_profiles_resolve_as_documented(name: str, ports: tuple[int, ...], budget: float | None, sweep: bool,
                                              rate: float, profiling: bool, services: bool) -> None:
    spec = _spec(name)
    assert spec.ports == ports and spec.host_timeout_s == budget and spec.rate == rate
    assert spec.discovery == (PING if sweep else None)
    assert (spec.profiling, spec.detect_services) == (profiling, services)


def test_custom_takes_its_settings_from_the_request() -> None:
    plain = _spec("custom", ports=[22, "80-81"], timeout_ms=200, retries=2)
    assert plain.ports == (22, 80, 81) and plain.host_timeout_s == 0.4 and plain.retries == 2
    assert (plain.profiling, plain.detect_services) == (False, False)
    assert _spec("custom", ports=[22]).host_timeout_s is None  # no timeout_ms, no budget
    profiled = _spec("custom", ports=[22], enable_profiling=True)
    assert (profiled.profiling, profiled.detect_services) == (True, True)


def test_request_lowers_the_rate_and_skips_discovery_in_any_profile() -> None:
    for name in PROFILE_NAMES:
        fields = {"ports": [22]} if "ports" in PROFILES[name].requires else {}
        spec = _spec(name, rate=50.0, skip_discovery=True, **fields)
        assert spec.rate == 50.0 and spec.discovery is None
    assert _spec("stealth", rate=1e6).rate == 100.0  # the cap holds above it


def test_profile_only_fields_belong_to_the_profiles_that_take_them() -> None:
    assert PROFILE_ONLY_FIELDS == ("ports", "udp_ports", "enable_profiling", "enable_cve_match",
                                   "stealth_level", "host_gap_ms", "jitter_ms", "source_ports")
    assert {taking(f).name for f in PROFILE_ONLY_FIELDS[:4]} == {"custom"}
    assert taking("stealth_level").name == "stealth"
    assert all(accepting(f) == ("stealth", "custom") for f in PROFILE_ONLY_FIELDS[5:])
    assert [p.name for p in PROFILES.values() if p.requires] == ["custom"]


def test_no_profile_claims_what_the_code_does_not_do() -> None:
    for p in PROFILES.values():
        if p.pacing == "steady":  # no per-host gap, no jitter, and probes shuffled only inside shards
            assert "jitter" not in p.description and "random order" not in p.description
        if isinstance(p.host_budget_s, int | float):
            assert f"{p.host_budget_s} s per host" in p.description
        if p.rate_cap is not None:
            assert f"{p.rate_cap:g} probes/s" in p.description
    stealth = PROFILES["stealth"].description
    for level in STEALTH_LEVELS.values():
        assert f"{level.name}: {level.gap_ms / 1000:g} s + 0-{level.jitter_ms / 1000:g} s, {level.rate_cap:g} probe" \
            in stealth
    for what in ("keyed random order", "connect() SYN", "No ping sweep", "no connection completed",
                 "reverse DNS (asked of the resolver, never the targets)", "counted in probes, not seconds",
                 "100 most frequently open ports are sent first", "a host that answers none of them is given up",
                 "up to 2× that for a host that drops most ports"):
        assert what in stealth


@pytest.mark.parametrize(("level", "gap", "jitter", "rate", "retries"), [
    (None, 3500, 1000, 100.0, 1), ("quiet", 3500, 1000, 100.0, 1), ("sneaky", 15000, 5000, 20.0, 1),
    ("paranoid", 300000, 60000, 1.0, 1),
])
def test_stealth_resolves_to_its_levels_pacing(level: str | None, gap: int, jitter: int, rate: float,
                                               retries: int) -> None:
    spec = _spec("stealth", stealth_level=level)
    assert spec.pacing == Pacing(gap, jitter, *kernel_source_ports())
    # No budget in seconds: a paced host is given up by probes (Plan.silent_probes), not timed out.
    assert (spec.rate, spec.retries, spec.host_timeout_s, spec.discovery) == (rate, retries, None, None)
    assert spec.ports == top_ports(1000) and spec.ports[:100] == top_ports(100)  # sent first


def test_a_stealth_requests_own_fields_override_its_level() -> None:
    spec = _spec("stealth", stealth_level="sneaky", host_gap_ms=5000, jitter_ms=0, source_ports="40000-40999",
                 rate=7.0, retries=0)
    assert spec.pacing == Pacing(5000, 0, 40000, 40999)
    assert (spec.rate, spec.retries) == (7.0, 0)
    assert _spec("stealth", rate=1e6).rate == 100.0  # the level's cap holds above it


def test_custom_is_paced_only_with_host_gap_ms() -> None:
    assert _spec("custom", ports=[22]).pacing is None
    paced = _spec("custom", ports=[22], host_gap_ms=2000, timeout_ms=500, retries=2)
    assert paced.pacing == Pacing(2000, 0, *kernel_source_ports())
    assert (paced.rate, paced.retries, paced.host_timeout_s) == (RATE, 2, None)  # no level: configured rate
    assert _spec("custom", ports=[22], timeout_ms=500, retries=2).host_timeout_s == 1.0  # unpaced: in seconds
    assert _spec("custom", ports=[22], host_gap_ms=2000, jitter_ms=300, source_ports="2000-2001").pacing == \
        Pacing(2000, 300, 2000, 2001)
    for fields in ({"jitter_ms": 5}, {"source_ports": "2000-3000"}):
        assert contradiction(ScanRequest(TARGET, "custom", ports=[22], **fields)) is not None
        assert contradiction(ScanRequest(TARGET, "custom", ports=[22], host_gap_ms=1, **fields)) is None
        assert contradiction(ScanRequest(TARGET, "stealth", **fields)) is None


def test_the_steady_profiles_are_not_paced() -> None:
    for name in ("quick", "normal", "deep"):
        assert _spec(name).pacing is None and PROFILES[name].level(None) is None


def test_a_paced_plan_holds_the_hosts_the_rate_keeps_at_their_gap() -> None:
    """rate x mean gap: at quiet, 100/s x 4 s = 400 hosts, each one SYN per 3.5-4.5 s; no more
    than the workers pace at once (PLAN_SHARDS shards of whole hosts each), and no bound from
    the budget, which bounds a silent host only."""
    stealth = resolve(ScanRequest("198.18.0.0/16", "stealth"), parse_targets("198.18.0.0/16"), RATE, 3)
    assert stealth.hosts_per_plan(4) == 400
    assert stealth.hosts_per_plan(2) == 2 * PLAN_SHARDS * (65536 // 1000)  # two cores: 195 hosts each at 1000 ports
    assert stealth.hosts_per_plan(1) == PLAN_SHARDS * (65536 // 1000)  # one worker: its shards of 65 hosts
    assert dataclasses.replace(stealth, max_hosts=10).hosts_per_plan(4) == 10
    sneaky = resolve(ScanRequest("198.18.0.0/16", "stealth", stealth_level="sneaky"), parse_targets("198.18.0.0/16"),
                     RATE, 3)
    assert sneaky.hosts_per_plan(4) == int(20 * 17.5)


@pytest.mark.parametrize(("text", "expected"), [
    ("32768 60999\n", (32768, 60999)), ("1000\t70000\n", (1024, 61439)), ("61000 65000", (61000, 61439)),
    ("62000 65000", LINUX_EPHEMERAL), ("", LINUX_EPHEMERAL), ("x y", LINUX_EPHEMERAL), ("1 2 3", LINUX_EPHEMERAL),
])
def test_source_ports_default_to_the_kernels_range_clipped(tmp_path: Path, text: str,
                                                           expected: tuple[int, int]) -> None:
    path = tmp_path / "ip_local_port_range"
    path.write_text(text)
    assert kernel_source_ports(str(path)) == expected
    assert kernel_source_ports(str(tmp_path / "missing")) == LINUX_EPHEMERAL


@pytest.mark.parametrize(("header", "table"), [("| profile |", markdown_table), ("| stealth_level |", levels_table)])
def test_readme_tables_are_the_registrys(header: str, table: Callable[[], str]) -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(header)
    shown = readme[start:readme.index("\n\n", start) + 1]
    assert shown == table(), (f"README.md's table differs from the registry: paste `python -c 'from "
                              f"netscand.scan.profiles import {table.__name__} as t; print(t())'` over it")


def _choices(parser: argparse.ArgumentParser, *path: str) -> list[str]:
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return list(next(a for a in parser._actions if a.dest == "profile").choices or ())


def test_cli_choices_are_the_registrys() -> None:
    root = argparse.ArgumentParser()
    one_shot.register(root.add_subparsers())
    assert _choices(root, "scan") == _choices(ctl.parser(), "start") == list(PROFILE_NAMES)


def test_profile_names_are_written_only_in_the_registry_tests_and_docs() -> None:
    outside = []
    for name in PROFILE_NAMES:
        found = subprocess.run(["git", "grep", "-l", f'"{name}"'], cwd=ROOT, capture_output=True, text=True,
                               check=False)  # exit 1: found nowhere
        outside += [f"{path}: {name}" for path in found.stdout.split()
                    if path != "netscand/scan/profiles.py" and not path.startswith(("tests/", "docs/", "bench/"))
                    and not path.endswith(".md")]
    assert not outside


def test_a_paced_custom_scan_lists_its_ports_most_frequently_open_first() -> None:
    """A paced host that answers none of its first 100 ports is given up: the first must be the
    likeliest to answer, whatever the order (or numbering) the request wrote them in."""
    ports = ["1-1024", "8080"]
    paced = _spec("custom", ports=ports, udp_ports=["1-200"], host_gap_ms=2000)
    ranked = [p for p in top_ports(1000) if p <= 1024 or p == 8080]
    assert paced.ports[:len(ranked)] == tuple(ranked)
    assert paced.ports[len(ranked):] == tuple(sorted(set(range(1, 1025)) - set(ranked)))  # unranked: port order
    assert paced.udp_ports[:4] == (161, 137, 123, 138)  # the UDP ranking's (631 is past 200)
    assert _spec("custom", ports=ports).ports == tuple(range(1, 1025)) + (8080,)  # steady: as parsed


@pytest.mark.parametrize(("profile", "fields", "adaptive"), [
    ("normal", {}, True),  # no rate given: engine.rate is the closed loop's ceiling
    ("deep", {}, True),
    ("normal", {"rate": 500.0}, False),  # the request's rate pins it
    ("custom", {"ports": [22], "rate": 500.0}, False),
    ("stealth", {}, False),  # paced: its level's pace and rate cap
    ("custom", {"ports": [22], "host_gap_ms": 1000}, False),
])
def test_a_rate_given_pins_it_and_none_given_lets_the_engine_find_it(profile: str, fields: dict[str, Any],
                                                                     adaptive: bool) -> None:
    assert _spec(profile, **fields).adaptive is adaptive


def test_the_one_shots_rate_pins_it() -> None:
    request = ScanRequest(TARGET, "normal")
    targets = parse_targets(TARGET)
    assert oneshot.prepare(config.Config(), request, targets, None).spec.adaptive
    pinned = oneshot.prepare(config.Config(), request, targets, 2000.0).spec
    assert not pinned.adaptive and pinned.rate == 2000.0
