"""The profile registry: what each profile resolves to, and everything that derives from the table."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import pytest

from netscand.cli import ctl
from netscand.cli import scan as one_shot
from netscand.scan.ports import top_ports
from netscand.scan.profiles import (
    PROFILE_NAMES,
    PROFILE_ONLY_FIELDS,
    PROFILES,
    ScanRequest,
    markdown_table,
    resolve,
    taking,
)
from netscand.scan.spec import Discovery, ScanSpec
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
    ("stealth", top_ports(1000), 300, False, 100.0, True, False),
])
def test_fixed_profiles_resolve_as_documented(name: str, ports: tuple[int, ...], budget: float, sweep: bool,
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


def test_profile_only_fields_belong_to_one_profile() -> None:
    assert PROFILE_ONLY_FIELDS == ("ports", "udp_ports", "enable_profiling", "enable_cve_match")
    assert {taking(f).name for f in PROFILE_ONLY_FIELDS} == {"custom"}
    assert [p.name for p in PROFILES.values() if p.requires] == ["custom"]


def test_no_profile_claims_what_the_code_does_not_do_yet() -> None:
    # Stealth's jitter arrives with its own issue; the prose must not promise it.
    for p in PROFILES.values():
        assert p.pacing == "steady" and "jitter" not in p.description
        assert "random order" not in p.description or "same keyed random order" in p.description
        if isinstance(p.host_budget_s, int | float):
            assert f"{p.host_budget_s} s per host" in p.description
        if p.rate_cap is not None:
            assert f"{p.rate_cap:g} probes/s" in p.description


@pytest.mark.parametrize("claim", [{"pacing": "jitter"}])
def test_a_profile_cannot_claim_what_the_engine_does_not_do(claim: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"^profile quick: not implemented yet: "):
        dataclasses.replace(PROFILES["quick"], **claim)


def test_readme_table_is_the_registrys() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("| profile |")
    shown = readme[start:readme.index("\n\n", start) + 1]
    assert shown == markdown_table(), ("README.md's profile table differs from the registry: paste "
                                       "`python -c 'from netscand.scan.profiles import markdown_table as t; "
                                       "print(t())'` over it")


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
