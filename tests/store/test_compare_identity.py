"""Identity from stable evidence (store/compare.py): SSH host keys and TLS certificates rank
between the MAC and the name; evidence several devices of a view share names none of them; a
replaced key or certificate at the same address keeps the device, unless its MAC or name says
another machine took the address; evidence other than a MAC moves a device only from where the
scan looked for it."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from netscand.store import Store, inventory
from netscand.store.compare import (
    Covered,
    compare,
    evidence,
    keys,
    pair,
    shared_evidence,
)
from netscand.store.compare import merged as compare_merged

BASE = int(ipaddress.IPv4Address("198.18.0.0"))
ALL = Covered(((BASE, BASE + 255),), frozenset({22, 443}), services=True)
LOW = Covered(((BASE, BASE + 127),), frozenset({22, 443}), services=True)  # one schedule's half
HIGH = Covered(((BASE + 128, BASE + 255),), frozenset({22, 443}), services=True)  # another's
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


def _merge(store: Store, n: int, found: list[dict[str, Any]], covered: Covered = ALL) -> list[dict[str, Any]]:
    """Scan n's merge into the inventory (no site)."""
    return store.call("merge", inventory.merge, scan_id=f"s{n}", site_id=None, found=found, covered=covered,
                      at=f"2026-03-{n:02d}T10:00:00Z")


def _inventory(store: Store) -> list[tuple[str, str, int]]:
    return store.call("read", lambda db: sorted((r["ip"], r["identity"], r["present"]) for r in db.query(
        "SELECT ip, identity, present FROM inventory")))


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


def test_a_cloned_key_on_a_subnet_the_scan_did_not_cover_is_another_device() -> None:
    """Another schedule's subnet has a clone of .3 (its key, a default certificate, its name): the
    scan of .0/25 finds .3 there again, and the clone at .200 was not looked for."""
    for evidence_ in ({"ssh": KEY_A}, {"cert": CERT_A}, {"hostname": "web"}):
        clone = _dev(200, **evidence_) | {"identity": keys(_dev(200, **evidence_))[0]}
        found = [_dev(3, **evidence_)]
        assert _kinds(compare([clone], found, LOW)) == [("device_appeared", "198.18.0.3")]
        p = pair([clone], found, LOW)
        assert p.unmatched == [0] and p.new == [(0, "ip:198.18.0.3")]  # the key is the clone's row's
    # the MAC is on-link evidence: that one is the device, wherever it was known
    known = [_dev(200, mac="00:1B:21:00:00:01") | {"identity": "mac:00:1B:21:00:00:01"}]
    assert _kinds(compare(known, [_dev(3, mac="00:1B:21:00:00:01")], LOW)) == [("address_changed", "198.18.0.3")]


def test_two_schedules_each_finding_one_key_on_its_subnet_keep_two_devices(store: Store) -> None:
    """Cloned VMs on two subnets, scanned by two schedules: each scan finds its own one again,
    where it looked; nothing moves back and forth."""
    scans = [(LOW, [_dev(3, ssh=KEY_A)]), (HIGH, [_dev(200, ssh=KEY_A)])] * 2
    found = [_kinds(_merge(store, n, view, covered)) for n, (covered, view) in enumerate(scans, 1)]
    assert found == [[("device_appeared", "198.18.0.3")], [("device_appeared", "198.18.0.200")], [], []]
    assert _inventory(store) == [("198.18.0.200", "ip:198.18.0.200", 1), ("198.18.0.3", f"ssh:{KEY_A}", 1)]


def test_a_move_within_what_the_scan_covered_is_still_one_device() -> None:
    before = [_dev(100, ssh=KEY_A) | {"identity": f"ssh:{KEY_A}"}]
    assert _kinds(compare(before, [_dev(3, ssh=KEY_A)], LOW)) == [("address_changed", "198.18.0.3")]


def test_a_gone_device_found_by_its_key_elsewhere_keeps_its_record() -> None:
    before = [_dev(200, ssh=KEY_A) | {"identity": f"ssh:{KEY_A}", "present": False}]
    p = pair(before, [_dev(3, ssh=KEY_A)], LOW)
    assert p.matched == [(0, 0, f"ssh:{KEY_A}")] and p.new == []


def test_another_machine_at_a_dhcp_address_is_not_a_rotated_key() -> None:
    """Known as ssh:A (once as name:alpha) at .3; its lease's next holder has key B and name
    beta: another device, not alpha re-keyed."""
    alpha = _dev(3, ssh=KEY_A, hostname="alpha") | {"identity": f"ssh:{KEY_A}"}
    assert sorted(_kinds(compare([alpha], [_dev(3, ssh=KEY_B, hostname="beta")], ALL))) == [
        ("device_appeared", "198.18.0.3"), ("device_gone", "198.18.0.3")]
    assert pair([alpha], [_dev(3, ssh=KEY_B, hostname="alpha")]).matched == [(0, 0, f"ssh:{KEY_B}")]
    assert pair([alpha], [_dev(3, ssh=KEY_B)]).matched == [(0, 0, f"ssh:{KEY_B}")]  # no name seen
    on_link = _dev(3, cert=CERT_A, mac="02:00:00:00:00:01") | {"identity": f"tls:{CERT_A}",
                                                               "mac": "00:1B:21:00:00:01"}
    assert pair([on_link], [_dev(3, cert=CERT_B, mac="00:1B:21:00:00:02")]).matched == []


def test_a_device_whose_identity_became_shared_keeps_it_if_its_address_is_anothers(store: Store) -> None:
    """The gone device at .1 is ip:198.18.0.1; the one there now was named web, a name the scan
    shows on two: it keeps name:web rather than take the gone one's identity (UNIQUE per site)."""
    _merge(store, 1, [_dev(1), _dev(5, hostname="web")])
    assert _kinds(_merge(store, 2, [_dev(1, hostname="web")])) == [("device_gone", "198.18.0.1"),
                                                                   ("address_changed", "198.18.0.1")]
    for n in (3, 4):  # every later scan of that view merges too
        _merge(store, n, [_dev(1, hostname="web"), _dev(2, hostname="web")])
    assert _inventory(store) == [("198.18.0.1", "ip:198.18.0.1", 0), ("198.18.0.1", "name:web", 1),
                    ("198.18.0.2", "ip:198.18.0.2", 1)]


keys_ = st.sampled_from([None, KEY_A, KEY_B])
certs = st.sampled_from([None, CERT_A, CERT_B])
macs = st.sampled_from([None, "00:1B:21:00:00:01", "00:1B:21:00:00:02", "02:00:00:00:00:01"])
views = st.lists(st.builds(_dev, st.sampled_from([1, 2, 3, 4, 130, 131]), ssh=keys_, cert=certs, mac=macs,
                           hostname=st.sampled_from([None, "web", "db"])), max_size=5, unique_by=lambda d: d["ip"])
scans = st.lists(st.tuples(st.sampled_from([ALL, LOW, HIGH]), views), min_size=1, max_size=5)


def _merged(known: list[dict[str, Any]], view: list[dict[str, Any]], covered: Covered) -> list[dict[str, Any]]:
    """The inventory after a merge of `view` (as store/inventory.py applies a pairing), checking
    the pairing: each found device paired once, and every identity it gives held by no other
    device (the inventory's UNIQUE(site_key, identity))."""
    p = pair(known, view, covered)
    assert sorted([j for _, j, _ in p.matched] + [j for j, _ in p.new]) == list(range(len(view)))
    assert sorted([i for i, _, _ in p.matched] + p.unmatched) == list(range(len(known)))
    holder = {k["identity"]: i for i, k in enumerate(known)}
    assert all(holder.get(identity, i) == i for i, _, identity in p.matched)
    assert not [identity for _, identity in p.new if identity in holder]
    after = [dict(k) for k in known]
    for i, j, identity in p.matched:
        after[i] = compare_merged(known[i], view[j], covered) | {"identity": identity, "present": True}
    for i in p.unmatched:
        if covered.covers(known[i]["ip"]):
            after[i]["present"] = False
    after += [compare_merged({"ip": view[j]["ip"]}, view[j], covered) | {"identity": identity, "present": True}
              for j, identity in p.new]
    identities = [d["identity"] for d in after]
    assert len(identities) == len(set(identities))
    return after


@settings(max_examples=300)
@given(scans)
def test_each_device_gets_one_identity_held_by_no_other_and_is_paired_once(
        history: list[tuple[Covered, list[dict[str, Any]]]]) -> None:
    """An inventory built by scans of parts of the network (gone devices, several devices at one
    address, devices known by evidence the next view shares), each scan's pairing checked."""
    known: list[dict[str, Any]] = []
    for covered, view in history:
        known = _merged(known, view, covered)


@settings(max_examples=200)
@given(views)
def test_a_view_compared_with_itself_changes_nothing(view: list[dict[str, Any]]) -> None:
    known = [view[j] | {"identity": identity} for j, identity in sorted(pair([], view).new)]
    assert compare(known, view, ALL) == []
