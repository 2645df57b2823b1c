"""The target policy as a pure function of the configuration: nothing is sent here."""

from __future__ import annotations

import pytest

from netscand.config import Config, ConfigError, PolicyConfig, check
from netscand.scan.policy import Policy, PolicyError
from netscand.scan.targets import parse_targets


def policy(**kwargs: object) -> Policy:
    return Policy.from_config(PolicyConfig(**kwargs))  # type: ignore[arg-type]


def test_defaults_allow_private_and_lab_space_only() -> None:
    p = policy()
    for target in ("10.1.2.0/24", "192.168.1.1", "172.16.0.0/12", "127.0.0.1", "198.18.0.0/15", "100.64.0.1"):
        kept, skipped = p.apply(parse_targets(target))
        assert kept == parse_targets(target) and skipped == 0
    with pytest.raises(PolicyError, match=r"203\.0\.113\.7 is outside the allowed targets") as caught:
        p.apply(parse_targets("10.0.0.1,203.0.113.7"))
    assert caught.value.status == 403 and caught.value.field == "target"


def test_the_first_range_outside_is_named_as_cidr_when_it_is_one() -> None:
    p = policy(allowed_targets=["198.18.0.0/25"])
    with pytest.raises(PolicyError, match=r"198\.18\.0\.128/25 is outside"):
        p.apply(parse_targets("198.18.0.0/24"))
    with pytest.raises(PolicyError, match=r"198\.18\.0\.128-198\.18\.0\.130 is outside"):
        p.apply(parse_targets("198.18.0.120-198.18.0.130"))


def test_excluded_addresses_are_skipped_and_counted() -> None:
    p = policy(allowed_targets=["0.0.0.0/0"], excluded_targets=["198.18.0.8/29", "224.0.0.0/4"])
    kept, skipped = p.apply(parse_targets("198.18.0.0/28"))
    assert skipped == 8 and kept == parse_targets("198.18.0.0-198.18.0.7")
    with pytest.raises(PolicyError, match="every address of the target is in the excluded targets"):
        p.apply(parse_targets("224.0.0.1"))


def test_size_and_rate_limits() -> None:
    p = policy(max_target_addresses=256, max_rate=1000.0)
    p.apply(parse_targets("10.0.0.0/24"))
    with pytest.raises(PolicyError, match="the target has 512 addresses; at most 256") as caught:
        p.apply(parse_targets("10.0.0.0/23"))
    assert caught.value.status == 422
    p.check_rate(None)
    p.check_rate(1000)
    with pytest.raises(PolicyError, match="rate 1001 is above the policy's maximum of 1000") as caught:
        p.check_rate(1001)
    assert caught.value.field == "rate"


def test_nothing_allowed_refuses_everything() -> None:
    with pytest.raises(PolicyError, match=r"outside the allowed targets \(none\)"):
        policy(allowed_targets=[]).apply(parse_targets("127.0.0.1"))


def test_socket_only_blocks_are_refused_to_remote_clients_only() -> None:
    p = policy()
    for target, block in (("127.0.0.1", "127.0.0.0/8"), ("169.254.169.254", "169.254.0.0/16"),
                          ("10.0.0.1,127.0.0.53", "127.0.0.0/8"), ("127.0.0.0/30", "127.0.0.0/8")):
        with pytest.raises(PolicyError, match=rf"^{block} may only be scanned by clients of the daemon's Unix "
                                              r"socket \(policy.socket_only_targets\)$") as caught:
            p.apply(parse_targets(target), remote=True)
        assert caught.value.status == 403 and caught.value.field == "target"
    for target in ("127.0.0.1", "169.254.169.254", "10.0.0.1,127.0.0.53"):
        assert p.apply(parse_targets(target)) == (parse_targets(target), 0)
    assert p.apply(parse_targets("10.0.0.0/24"), remote=True)[1] == 0


def test_excluded_addresses_do_not_count_as_socket_only() -> None:
    # Never probed, so never a reason to refuse.
    p = policy(excluded_targets=["127.0.0.0/8"])
    kept, skipped = p.apply(parse_targets("10.0.0.1,127.0.0.1"), remote=True)
    assert kept == parse_targets("10.0.0.1") and skipped == 1


def test_socket_only_blocks_are_checked_cidrs() -> None:
    assert policy(socket_only_targets=[]).apply(parse_targets("127.0.0.1"), remote=True)[1] == 0
    bad = r'test: policy.socket_only_targets\[0\]: expected an IPv4 CIDR block .*, got "loopback"'
    with pytest.raises(ConfigError, match=bad):
        check(Config(policy=PolicyConfig(socket_only_targets=["loopback"])), "test")
