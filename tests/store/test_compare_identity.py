"""Identity from stable evidence (store/compare.py): SSH host keys and TLS certificates rank
between the MAC and the name; evidence several devices of a view share names none of them; a
replaced key or certificate at the same address keeps the device."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from netscand.store.compare import Covered, compare, evidence, keys, pair, shared_evidence

BASE = int(ipaddress.IPv4Address("198.18.0.0"))
ALL = Covered(((BASE, BASE + 255),), frozenset({22, 443}), services=True)
KEY_A, KEY_B = "SHA256:" + "A" * 43, "SHA256:" + "B" * 43
CERT_A, CERT_B = "a" * 64, "b" * 64


def _dev(n: int, *, ssh: str | None = None, cert: str | None = None, mac: str | None = None,
         hostname: str | None = None) -> dict[str, Any]:
    device: dict[str, Any] = {"ip": str(ipaddress.IPv4Address(BASE + n)), "mac": mac, "hostname": hostname,
                              "vendor": None, "os_guess": None,
                              "ports": [{"port": 22, "protocol": "tcp", "state": "open", "service": "SSH"}]}
    if ssh:
        device["host_keys"] = [{"port": 22, "type": "ssh-ed25519", "fingerprint": ssh}]
    if cert:
        device["certificates"] = [{"port": 443, "sha256": cert, "subject": "CN=x", "issuer": "CN=x",
                                   "not_after": "2030-01-01T00:00:00+00:00"}]
    return device


def _kinds(changes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["kind"], c["ip"]) for c in changes]


def test_evidence_ranks_mac_then_ssh_then_tls_then_name() -> None:
    device = _dev(3, ssh=KEY_A, cert=CERT_A, mac="00:1B:21:00:00:01", hostname="Web.")
    assert keys(device) == ["mac:00:1B:21:00:00:01", f"ssh:{KEY_A}", f"tls:{CERT_A}", "name:web", "ip:198.18.0.3"]
    assert keys(_dev(3, ssh=KEY_A, cert=CERT_A)) == [f"ssh:{KEY_A}", f"tls:{CERT_A}", "ip:198.18.0.3"]
    # one key on two SSH ports is one piece of evidence
    twice = _dev(3) | {"host_keys": [{"port": 22, "fingerprint": KEY_A}, {"port": 2222, "fingerprint": KEY_A}]}
    assert evidence(twice) == [f"ssh:{KEY_A}"]


def test_moved_routed_host_keeps_its_record_by_its_ssh_key() -> None:
    """Behind a router no MAC is seen: the host key says the device at .200 is the one from .3."""
    before = [_dev(3, ssh=KEY_A) | {"identity": f"ssh:{KEY_A}"}]
    changes = compare(before, [_dev(200, ssh=KEY_A)], ALL)
    assert [(c["kind"], c["before"], c["after"]) for c in changes] == [
        ("address_changed", "198.18.0.3", "198.18.0.200")]
    assert pair(before, [_dev(200, ssh=KEY_A)]).matched == [(0, 0, f"ssh:{KEY_A}")]


def test_moved_host_keeps_its_record_by_its_certificate() -> None:
    before = [_dev(3, cert=CERT_A) | {"identity": f"tls:{CERT_A}"}]
    assert _kinds(compare(before, [_dev(9, cert=CERT_A)], ALL)) == [("address_changed", "198.18.0.9")]


def test_two_hosts_sharing_a_certificate_stay_two_devices() -> None:
    """One wildcard certificate on two hosts (or a load balancer's two addresses) names neither."""
    view = [_dev(1, cert=CERT_A), _dev(2, cert=CERT_A)]
    assert shared_evidence(view) == {f"tls:{CERT_A}"}
    assert pair([], view).new == [(0, "ip:198.18.0.1"), (1, "ip:198.18.0.2")]
    # known by it at .1 before the second came: each stays at its address, and .1 drops the
    # certificate as its identity (the next scan could find only the other)
    before = [_dev(1, cert=CERT_A) | {"identity": f"tls:{CERT_A}"}]
    assert _kinds(compare(before, view, ALL)) == [("device_appeared", "198.18.0.2")]
    assert pair(before, view).matched == [(0, 0, "ip:198.18.0.1")]


def test_cloned_vms_with_one_host_key_stay_apart() -> None:
    view = [_dev(1, ssh=KEY_A), _dev(2, ssh=KEY_A), _dev(3, ssh=KEY_A)]
    before = [_dev(n, ssh=KEY_A) | {"identity": f"ip:198.18.0.{n}"} for n in (1, 2, 3)]
    assert compare(before, view, ALL) == []
    assert sorted(i for _, _, i in pair(before, view).matched) == [f"ip:198.18.0.{n}" for n in (1, 2, 3)]


def test_rotated_host_key_at_the_same_address_keeps_the_record() -> None:
    """A reinstall's new host key: nothing contradicts the device at its address; it takes the
    new key as its identity, so it is followed by that one from now on."""
    before = [_dev(3, ssh=KEY_A) | {"identity": f"ssh:{KEY_A}"}]
    assert compare(before, [_dev(3, ssh=KEY_B)], ALL) == []
    assert pair(before, [_dev(3, ssh=KEY_B)]).matched == [(0, 0, f"ssh:{KEY_B}")]


def test_renewed_certificate_at_the_same_address_keeps_the_record() -> None:
    before = [_dev(3, cert=CERT_A) | {"identity": f"tls:{CERT_A}"}]
    assert compare(before, [_dev(3, cert=CERT_B)], ALL) == []
    assert pair(before, [_dev(3, cert=CERT_B)]).matched == [(0, 0, f"tls:{CERT_B}")]


def test_a_rotated_key_does_not_hide_a_moved_device() -> None:
    """The key was seen elsewhere: the device moved there, and the one at its old address with
    another key is another device."""
    before = [_dev(3, ssh=KEY_A) | {"identity": f"ssh:{KEY_A}"}]
    changes = compare(before, [_dev(3, ssh=KEY_B), _dev(7, ssh=KEY_A)], ALL)
    assert _kinds(changes) == [("device_appeared", "198.18.0.3"), ("address_changed", "198.18.0.7")]


def test_a_device_seen_without_its_key_keeps_it() -> None:
    """A scan without service detection shows no key: the identity stays the stronger one."""
    before = [_dev(3, ssh=KEY_A) | {"identity": f"ssh:{KEY_A}"}]
    assert pair(before, [_dev(3, hostname="web")]).matched == [(0, 0, f"ssh:{KEY_A}")]
    assert pair(before, [_dev(3, cert=CERT_A)]).matched == [(0, 0, f"ssh:{KEY_A}")]


def test_a_mac_still_outranks_and_contradicts() -> None:
    before = [_dev(3, ssh=KEY_A) | {"identity": f"ssh:{KEY_A}"}]
    assert pair(before, [_dev(3, ssh=KEY_A, mac="00:1B:21:00:00:01")]).matched == [(0, 0, "mac:00:1B:21:00:00:01")]
    known = [_dev(3, mac="00:1B:21:00:00:01") | {"identity": "mac:00:1B:21:00:00:01"}]
    changes = compare(known, [_dev(3, ssh=KEY_A, mac="00:1B:21:00:00:02")], ALL)
    assert sorted(c["kind"] for c in changes) == ["device_appeared", "device_gone"]


keys_ = st.sampled_from([None, KEY_A, KEY_B])
certs = st.sampled_from([None, CERT_A, CERT_B])
views = st.lists(st.builds(_dev, st.integers(1, 6), ssh=keys_, cert=certs,
                           mac=st.sampled_from([None, "00:1B:21:00:00:01"]),
                           hostname=st.sampled_from([None, "web"])), max_size=6, unique_by=lambda d: d["ip"])


@settings(max_examples=300)
@given(views, views)
def test_each_device_gets_one_identity_and_is_paired_once(before: list[dict[str, Any]],
                                                          after: list[dict[str, Any]]) -> None:
    first = pair([], before)
    known = [before[j] | {"identity": identity} for j, identity in sorted(first.new)]
    p = pair(known, after)
    identities = [i for _, _, i in p.matched] + [i for _, i in p.new]
    assert len(identities) == len(set(identities)) == len(after)
    assert sorted([j for _, j, _ in p.matched] + [j for j, _ in p.new]) == list(range(len(after)))
    assert len({i for i, _, _ in p.matched}) == len(p.matched)
    assert sorted([i for i, _, _ in p.matched] + p.unmatched) == list(range(len(known)))
    assert compare(known, before, ALL) == []  # a view compared with itself
