"""The lab's plan and safety checks as pure functions: no root, no namespaces."""

from __future__ import annotations

import pytest

from netscand.lab import LabError, impair, namespaces, safety, truth


@pytest.mark.parametrize("hosts", [1, 2, 8, 32])
def test_plan_is_deterministic_and_consistent(hosts: int) -> None:
    plan = truth.plan("nsd", hosts, 1, 0, 0)
    assert plan == truth.plan("nsd", hosts, 1, 0, 0)
    assert plan != truth.plan("nsd", hosts, 2, 0, 0)
    found = plan["hosts"]
    assert len(found) == hosts
    assert sum(h["routed"] for h in found) == truth.routed_count(hosts)
    assert len({h["ip"] for h in found}) == len({h["mac"] for h in found}) == hosts
    for host in found:
        assert int(host["mac"].split(":")[0], 16) & 0x03 == 0x02  # unicast, locally administered
        assert host["ttl"] in truth.TTLS
        assert host["ip"].startswith("198.19.0." if host["routed"] else "198.18.0.")
        assert 3 <= len(host["open"]) <= 8 and 1 <= len(host["filtered"]) <= 4
        assert not set(host["open"]) & set(host["filtered"])
        assert len([p for p in host["open"] if p <= 1024 and p in truth.WELL_KNOWN]) >= 2
        assert {int(p) for p in host["banners"]} <= set(host["open"])


def test_routed_share() -> None:
    assert [truth.routed_count(n) for n in (1, 2, 3, 8, 32)] == [0, 1, 1, 2, 8]


def test_overlap_check_ignores_default_route_and_other_networks() -> None:
    assert safety.overlapping(["0.0.0.0/0", "192.0.2.0/24", "198.20.0.0/24", "fd00::/64", "127.0.0.0/8"]) == []
    assert safety.overlapping(["198.18.0.0/15", "198.19.0.77/32", "198.18.0.9/24"]) == [
        "198.18.0.0/15", "198.19.0.77/32", "198.18.0.9/24"]


@pytest.mark.parametrize("prefix", ["", "Nsd", "nsd-1", "1nsd", "a" * 13, "ns d"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(LabError):
        namespaces.check_prefix(prefix)


def test_loss_ruleset() -> None:
    assert "numgen" not in impair.ruleset(0)
    rules = impair.ruleset(12.5)
    assert rules.count("numgen random mod 10000 < 1250 counter drop") == 2
    assert 'hook ingress device "s-scan"' in rules and 'hook egress device "s-scan"' in rules


def test_throttle_ruleset() -> None:
    rules = impair.ruleset(0, 20_000)
    assert rules.count("limit rate over 20000/second burst 400 packets counter drop") == 1
    ingress = rules.split("chain egress")[0]
    assert "limit rate" in ingress and "numgen" not in rules
