"""The comparison behind the inventory's changes and the diff of two scans (store/compare.py),
as properties over generated devices: nothing changes between a view and itself, the changes of
one view to another, applied to the first, give what the second looked at, and any device dicts
a result may hold are compared without error; then the identity rules, case by case."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from netscand.store.compare import (Covered, compare, device_changes, identified, keys, merged, open_ports, pair,
                                    randomized, unchanged)

BASE = int(ipaddress.IPv4Address("198.18.0.0"))
PORTS = (21, 22, 80, 443, 8080)
ALL = Covered(((BASE, BASE + 255),), frozenset(PORTS), frozenset(PORTS), services=True, cves=True)

cve_ids = st.sampled_from(["CVE-2024-6387", "CVE-2023-38408", "CVE-2021-41617"])
findings = st.lists(st.fixed_dictionaries({
    "id": cve_ids, "status": st.sampled_from(["vulnerable", "fixed_by_distribution", "needs_platform"]),
    "severity": st.sampled_from(["critical", "high", "medium", "low", "none", None])}), max_size=3)
text = st.sampled_from([None, "a", "b"])


@st.composite
def ports(draw: st.DrawFn) -> list[dict[str, Any]]:
    chosen = draw(st.sets(st.tuples(st.sampled_from(PORTS), st.sampled_from(["tcp", "udp"])), max_size=5))
    out = []
    for port, protocol in sorted(chosen):
        entry = {"port": port, "protocol": protocol, "state": draw(st.sampled_from(["open", "closed", "filtered"])),
                 "service": draw(st.sampled_from([None, "SSH", "HTTP"]))}
        for key in ("product", "version", "cpe"):
            if (value := draw(text)) is not None:
                entry[key] = value
        if draw(st.booleans()):
            entry["cves"] = draw(findings)
        out.append(entry)
    return out


@st.composite
def devices(draw: st.DrawFn, host: int | None = None) -> dict[str, Any]:
    n = draw(st.integers(1, 8)) if host is None else host
    device: dict[str, Any] = {
        "ip": str(ipaddress.IPv4Address(BASE + n)),
        "mac": draw(st.sampled_from([None, "00:1B:21:00:00:01", "02:00:00:00:00:02", "zz"])),
        "hostname": draw(st.sampled_from([None, "web", "db"])), "vendor": draw(text),
        "os_guess": draw(st.sampled_from([None, "Linux", "Windows"])), "ports": draw(ports())}
    for flag in ("tarpit", "timed_out"):
        if draw(st.booleans()):
            device[flag] = True
    if draw(st.booleans()):
        device["not_shown"] = draw(st.sampled_from([{"closed": 995}, {"open": 2000}]))
    return device


views = st.lists(devices(), max_size=6, unique_by=lambda d: d["ip"])  # a result: one device an address
coverings = st.builds(Covered, st.just(((BASE, BASE + 4),)), st.frozensets(st.sampled_from(PORTS)),
                      st.frozensets(st.sampled_from(PORTS)), st.booleans(), st.booleans())


@settings(max_examples=300)
@given(views, coverings)
def test_a_view_compared_with_itself_has_no_changes(view: list[dict[str, Any]], covered: Covered) -> None:
    assert compare(view, view, covered) == []


@settings(max_examples=300)
@given(views, views, coverings)
def test_any_two_views_compare(before: list[dict[str, Any]], after: list[dict[str, Any]], covered: Covered) -> None:
    changes = compare(before, after, covered)
    assert all(c["kind"] != "device_appeared" or covered.covers(c["ip"]) for c in changes)
    assert len({(c["ip"], c["kind"], c.get("port"), c.get("protocol"), c.get("cve", {}).get("id"))
                for c in changes}) == len(changes)


def _apply(before: dict[str, Any], changes: list[dict[str, Any]]) -> tuple[set[tuple[int, str]], dict, Any]:
    """The open ports, each open port's detected fields and vulnerable CVEs, and the OS, after
    applying `changes` to `before`."""
    opened = set(open_ports(before))
    fields = {k: {f: p.get(f) for f in ("service", "product", "version")} for k, p in open_ports(before).items()}
    cves = {k: {f["id"] for f in p.get("cves") or () if f["status"] == "vulnerable"}
            for k, p in open_ports(before).items()}
    os = before.get("os_guess")
    for c in changes:
        key = (c.get("port"), c.get("protocol"))
        if c["kind"] == "port_opened":
            opened.add(key)
            cves[key] = set()
        elif c["kind"] == "port_closed":
            opened.discard(key)
        elif c["kind"].endswith("_changed") and c["kind"] != "os_changed" and c["kind"] != "address_changed":
            fields[key][c["kind"].removesuffix("_changed")] = c["after"]
        elif c["kind"] == "os_changed":
            os = c["after"]
        elif c["kind"] == "cve_found":
            cves.setdefault(key, set()).add(c["after"])
        elif c["kind"] == "cve_fixed":
            cves[key].discard(c["before"])
    return opened, {k: (fields.get(k), cves.get(k, set())) for k in opened}, os


@settings(max_examples=500)
@given(devices(host=1), devices(host=1), coverings)
def test_changes_applied_to_the_earlier_state_give_what_the_scan_looked_at(
        before: dict[str, Any], after: dict[str, Any], covered: Covered) -> None:
    before = before | {"detected": [f"{p['port']}/{p['protocol']}" for p in before["ports"]]}
    changes = device_changes(before, after, covered)
    opened, details, os = _apply(before, changes)
    state = merged(before, after, covered)
    assert opened == set(open_ports(state))  # every port the scan probed or found, as it found it
    if before.get("os_guess") and after.get("os_guess"):  # only a change between two known guesses is one
        assert os == state["os_guess"]
    for key, port in open_ports(state).items():
        fields, cves = details[key]
        if covered.cves and key in open_ports(after):
            assert cves == {f["id"] for f in port.get("cves") or () if f["status"] == "vulnerable"}
        if covered.services and key in open_ports(before) and key in open_ports(after):
            for name in ("service", "product", "version"):
                old, new = open_ports(before)[key].get(name), port.get(name)
                if old is not None and new is not None and fields[name] != new:
                    # unreported only for a version under another product
                    assert name == "version" and open_ports(before)[key].get("product") != port.get("product")


def _dev(n: int, mac: str | None = None, hostname: str | None = None,
         ports: tuple[int, ...] = (22,)) -> dict[str, Any]:
    return {"ip": str(ipaddress.IPv4Address(BASE + n)), "mac": mac, "hostname": hostname, "vendor": None,
            "os_guess": None,
            "ports": [{"port": p, "protocol": "tcp", "state": "open", "service": None} for p in ports]}


def test_a_trusted_mac_follows_a_host_to_its_new_address() -> None:
    changes = compare([_dev(3, "00:1B:21:5E:00:13")], [_dev(200, "00:1B:21:5E:00:13")], ALL)
    assert [(c["kind"], c["before"], c["after"]) for c in changes] == [
        ("address_changed", "198.18.0.3", "198.18.0.200")]


def test_a_randomized_mac_is_not_trusted_alone() -> None:
    assert randomized("02:00:C6:12:00:05") and not randomized("00:1B:21:5E:00:13")
    assert keys(_dev(3, "02:00:C6:12:00:05")) == ["ip:198.18.0.3"]
    changes = compare([_dev(3, "02:00:C6:12:00:05")], [_dev(200, "02:00:C6:12:00:05")], ALL)
    assert sorted(c["kind"] for c in changes) == ["device_appeared", "device_gone"]
    # with a hostname beside it, the name says it is the same host
    changes = compare([_dev(3, "02:00:C6:12:00:05", "laptop")], [_dev(200, "02:00:C6:12:00:07", "laptop")], ALL)
    assert [c["kind"] for c in changes] == ["address_changed"]


def test_another_mac_at_an_address_is_another_device() -> None:
    changes = compare([_dev(3, "00:1B:21:00:00:01")], [_dev(3, "00:1B:21:00:00:02")], ALL)
    assert sorted(c["kind"] for c in changes) == ["device_appeared", "device_gone"]


def test_a_known_device_seen_without_its_mac_is_still_it() -> None:
    """A routed scan sees no MAC: the device at the address is the one known there."""
    assert compare([_dev(3, "00:1B:21:00:00:01")], [_dev(3)], ALL) == []


def test_one_identity_goes_to_one_device_of_a_scan() -> None:
    """A MAC answering for two addresses (proxy ARP): the lower takes the MAC, the other its address."""
    p = pair([], [_dev(5, "00:1B:21:00:00:01"), _dev(4, "00:1B:21:00:00:01")])
    assert sorted(identity for _, identity in p.new) == ["ip:198.18.0.5", "mac:00:1B:21:00:00:01"]


def test_an_earlier_device_gains_its_strongest_identity() -> None:
    p = pair([_dev(3) | {"identity": "ip:198.18.0.3"}], [_dev(3, hostname="web")])
    assert p.matched == [(0, 0, "name:web")]


def test_gone_and_appeared_only_where_the_scan_looked() -> None:
    narrow = Covered(((BASE + 1, BASE + 10),), frozenset(PORTS))
    changes = compare([_dev(3), _dev(50)], [_dev(4), _dev(60)], narrow)
    assert sorted((c["kind"], c["ip"]) for c in changes) == [
        ("device_appeared", "198.18.0.4"), ("device_gone", "198.18.0.3")]


def test_ports_close_only_where_probed_and_listed() -> None:
    before, after = _dev(3, ports=(22, 80, 8080)), _dev(3, ports=())
    only_22 = Covered(((BASE, BASE + 255),), frozenset({22}))
    assert [(c["kind"], c["port"]) for c in device_changes(before, after, only_22)] == [("port_closed", 22)]
    assert device_changes(before, after | {"timed_out": True}, ALL) == []
    assert device_changes(before, after | {"tarpit": True, "not_shown": {"open": 5000}}, ALL) == []


def test_a_udp_port_found_by_a_query_opens_but_does_not_close_unprobed() -> None:
    mdns = {"port": 5353, "protocol": "udp", "state": "open", "service": "MDNS"}
    no_udp = Covered(((BASE, BASE + 255),), frozenset({22}))
    opened = device_changes(_dev(3), _dev(3) | {"ports": _dev(3)["ports"] + [mdns]}, no_udp)
    assert [(c["kind"], c["port"], c["protocol"]) for c in opened] == [("port_opened", 5353, "udp")]
    assert device_changes(_dev(3) | {"ports": _dev(3)["ports"] + [mdns]}, _dev(3), no_udp) == []


def _ssh(product: str | None, version: str | None) -> dict[str, Any]:
    port = {"port": 22, "protocol": "tcp", "state": "open", "service": "SSH"}
    return _dev(3) | {"ports": [port | {k: v for k, v in (("product", product), ("version", version)) if v}],
                      "detected": ["22/tcp"]}


def test_services_change_only_with_detection_on_both_sides_and_known_values() -> None:
    upgraded = device_changes(_ssh("OpenSSH", "9.2p1"), _ssh("OpenSSH", "9.7p1"), ALL)
    assert [(c["kind"], c["before"], c["after"]) for c in upgraded] == [("version_changed", "9.2p1", "9.7p1")]
    assert device_changes(_ssh("OpenSSH", "9.2p1"), _ssh("OpenSSH", None), ALL) == []  # now unknown
    without = Covered(ALL.ranges, ALL.tcp, ALL.udp, services=False)
    assert device_changes(_ssh("OpenSSH", "9.2p1"), _ssh(None, None), without) == []
    assert merged(_ssh("OpenSSH", "9.2p1"), _ssh(None, None), without)["ports"][0]["version"] == "9.2p1"
    undetected = _ssh("OpenSSH", "9.2p1") | {"detected": []}
    assert device_changes(undetected, _ssh("OpenSSH", "9.7p1"), ALL) == []
    kinds = [c["kind"] for c in device_changes(_ssh("OpenSSH", "9.2p1"), _ssh("Dropbear", "2022.83"), ALL)]
    assert kinds == ["product_changed"]  # its version is the other product's


def test_cves_are_found_and_fixed_only_by_a_scan_that_matched_them() -> None:
    def vulnerable(*ids: str) -> dict[str, Any]:
        port = _ssh("OpenSSH", "9.2p1")["ports"][0] | {"cpe": "cpe", "cves": [
            {"id": i, "status": "vulnerable", "severity": "high"} for i in ids]}
        return _dev(3) | {"ports": [port]}

    found = device_changes(vulnerable("CVE-2023-38408"), vulnerable("CVE-2024-6387"), ALL)
    assert [(c["kind"], c["cve"]["id"]) for c in found] == [("cve_found", "CVE-2024-6387"),
                                                           ("cve_fixed", "CVE-2023-38408")]
    unmatched = Covered(ALL.ranges, ALL.tcp, ALL.udp, services=True, cves=False)
    assert device_changes(vulnerable("CVE-2023-38408"), vulnerable(), unmatched) == []
    kept = merged(vulnerable("CVE-2023-38408"), _ssh("OpenSSH", "9.2p1") | {"ports": [
        _ssh("OpenSSH", "9.2p1")["ports"][0] | {"cpe": "cpe"}]}, unmatched)
    assert kept["ports"][0]["cves"][0]["id"] == "CVE-2023-38408"  # still that version's


def test_covered_addresses_and_intersections() -> None:
    a = Covered(((BASE, BASE + 10), (BASE + 11, BASE + 20)), frozenset({22, 80}), frozenset({53}), True, True)
    b = Covered(((BASE + 15, BASE + 30),), frozenset({80}), frozenset(), True, False)
    both = a & b
    assert both.ranges == ((BASE + 15, BASE + 20),) and both.tcp == {80} and both.services and not both.cves
    assert a.covers("198.18.0.20") and not a.covers("198.18.0.21") and not a.covers("not an address")
    assert b.with_addresses(["198.18.0.1"]).covers("198.18.0.1")


def test_a_moved_device_is_matched_before_one_without_identity_takes_its_address() -> None:
    mac = "00:1B:21:5E:00:13"
    changes = compare([_dev(5, mac)], [_dev(5), _dev(6, mac)], ALL)
    assert [(c["kind"], c["ip"], c["before"], c["after"]) for c in changes] == [
        ("device_appeared", "198.18.0.5", None, "198.18.0.5"),
        ("address_changed", "198.18.0.6", "198.18.0.5", "198.18.0.6")]


def test_a_name_several_found_devices_share_is_no_identity() -> None:
    generic = "dhcp.example"
    assert pair([], [_dev(1, hostname=generic), _dev(2, hostname=generic)]).new == [
        (0, "ip:198.18.0.1"), (1, "ip:198.18.0.2")]
    # .1 known by the name; found again at .1 beside another of that name: it is still .1
    changes = compare([_dev(1, hostname=generic) | {"identity": f"name:{generic}"}],
                      [_dev(1, hostname=generic), _dev(2, hostname=generic)], ALL)
    assert [(c["kind"], c["ip"]) for c in changes] == [("device_appeared", "198.18.0.2")]


def test_a_port_whose_detection_failed_keeps_its_service() -> None:
    """A port detection did not identify falls back to its registered name: not a service change."""
    registered = Covered(ALL.ranges, ALL.tcp, ALL.udp, services=True, registered=lambda port: "SSH")
    before = _dev(3) | {"ports": [{"port": 22, "protocol": "tcp", "state": "open", "service": "DROPBEAR"}],
                        "detected": ["22/tcp"]}
    fallback = _dev(3) | {"ports": [{"port": 22, "protocol": "tcp", "state": "open", "service": "SSH"}]}
    assert identified(before["ports"][0], "SSH") and not identified(fallback["ports"][0], "SSH")
    assert device_changes(before, fallback, registered) == []
    state = merged(before, fallback, registered)
    assert state["ports"][0]["service"] == "DROPBEAR" and state["detected"] == ["22/tcp"]
    # the same name from detection, with what it told of the product, is a change
    probed = _dev(3) | {"ports": [fallback["ports"][0] | {"product": "OpenSSH"}]}
    assert [c["kind"] for c in device_changes(before, probed, registered)] == ["service_changed"]


@settings(max_examples=300)
@given(devices(host=1), coverings)
def test_a_device_found_unchanged_has_no_changes_and_keeps_its_state(found: dict[str, Any], covered: Covered) -> None:
    """The merge's fast path (compare.unchanged) skips device_changes and merged: both must agree."""
    state = merged({"ip": found["ip"]}, found, covered)
    if unchanged(state, found, covered):
        assert device_changes(state, found, covered) == []
        again = merged(state, found, covered)
        assert again["ports"] == state["ports"] and again["detected"] == state["detected"]
    assert unchanged(state, found | {"ports": []}, covered) == (not open_ports(found))
