"""The profiles' UDP and CVE settings as resolve() turns them into a ScanSpec."""

from __future__ import annotations

from typing import Any

from netscand.engine.probes.payloads import PAYLOAD_PORTS
from netscand.scan.ports import deep_udp_ports, top_udp_ports
from netscand.scan.profiles import PROFILES, ScanRequest, resolve
from netscand.scan.spec import ScanSpec
from netscand.scan.targets import parse_targets

TARGETS = parse_targets("198.18.0.0/24")


def spec(**fields: Any) -> ScanSpec:
    return resolve(ScanRequest("198.18.0.0/24", **fields), TARGETS, rate=1000.0, retries=2)


def test_deep_scans_the_top_udp_ports_and_every_payload_port_and_matches_cves() -> None:
    deep = spec(profile="deep")
    assert deep.udp_ports == deep_udp_ports() and deep.cve_match and deep.detect_services
    assert set(top_udp_ports(100)) | set(PAYLOAD_PORTS) == set(deep.udp_ports) and len(deep.ports) == 65535
    assert f"{len(deep.udp_ports)} UDP ports" in PROFILES["deep"].description


def test_other_fixed_profiles_scan_no_udp_and_match_no_cve() -> None:
    for name in ("quick", "normal", "stealth"):
        resolved = spec(profile=name)
        assert (resolved.udp_ports, resolved.cve_match) == ((), False), name


def test_custom_takes_udp_ports_as_it_takes_ports_and_cve_matching_on_request() -> None:
    custom = spec(profile="custom", ports=["22"], udp_ports=[161, "53-54", 53])
    assert (custom.ports, custom.udp_ports, custom.cve_match) == ((22,), (53, 54, 161), False)
    bare = spec(profile="custom", ports=[22], enable_cve_match=True, enable_profiling=True)
    assert (bare.udp_ports, bare.cve_match) == ((), True)


def test_cve_matching_implies_profiling_and_service_detection() -> None:
    # Without service detection no port has a CPE: matching would silently find nothing.
    alone = spec(profile="custom", ports=[22], enable_cve_match=True)
    assert (alone.cve_match, alone.profiling, alone.detect_services) == (True, True, True)
