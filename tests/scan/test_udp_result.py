"""ScanResult's UDP states: the engine's UDP records (as engine/tally.py's udp_ports shapes them)
beside the TCP ones, listed or counted per state, merged with the name queries' answers."""

from __future__ import annotations

from pathlib import Path

from netscand.api.openapi import document as openapi_document
from netscand.engine.shm import R_PORT, R_TALLY, S_CLOSED, S_NONE, S_OPEN, S_UNREACH, Result
from netscand.profiling.services import ServiceInfo
from netscand.scan.identify import _apply_udp
from netscand.scan.persist import device_row
from netscand.scan.result import LIST_LIMIT, OPEN_CAP, Host, ScanResult, document
from netscand.store import Store
from tests.api.conftest import schema_validator

IP = 0xC6120005  # 198.18.0.5


def udp_port(number: int, state: int = S_OPEN, ip: int = IP) -> Result:
    return Result(R_PORT, state, 64, 0, 1, 0, ip, number, 0, 0, 0, b"\0" * 6, 0, b"")


def udp_tally(closed: int, silent: int, filtered: int = 0, shard: int = 0, ip: int = IP) -> Result:
    """The UDP tally: a = closed, b = silent (open|filtered), win = filtered (ICMP unreachable)."""
    return Result(R_TALLY, 0, 0, 0, 1, shard, ip, 0, filtered, closed, silent, b"\0" * 6, 0, b"")


def udp_scanned(nports: int, records: list[Result]) -> tuple[ScanResult, Host]:
    result = ScanResult()
    result.mark_up(IP)
    result.probed((IP,), nports, "udp")
    for r in records:
        result.add(r, nports, "udp")
    return result, result.hosts[IP]


def udp_ports(device: dict) -> dict[int, str]:
    return {p["port"]: p["state"] for p in device["ports"] if p["protocol"] == "udp"}


def valid(device: dict) -> dict:
    schema_validator({"$ref": "#/components/schemas/Device"}).validate(device)
    return device


def test_each_udp_state_is_listed_when_few() -> None:
    result, h = udp_scanned(9, [
        udp_port(53), udp_tally(closed=2, silent=5, filtered=1),
        udp_port(7, S_CLOSED), udp_port(9, S_CLOSED), udp_port(17, S_UNREACH),
        *(udp_port(p, S_NONE) for p in (123, 161, 500, 1900, 5353))])
    device = valid(result.device(h))
    assert udp_ports(device) == {53: "open", 7: "closed", 9: "closed", 17: "filtered", 123: "open|filtered",
                                 161: "open|filtered", 500: "open|filtered", 1900: "open|filtered",
                                 5353: "open|filtered"}
    assert "not_shown_udp" not in device and "not_shown" not in device
    assert (h.states("udp").probed, h.tcp.probed) == (9, 0)  # per protocol
    assert result.open_ports == 1 and document("id", "completed", [device], 1.0)["open_ports_total"] == 1


def test_many_udp_ports_in_a_state_are_counted_by_state() -> None:
    # 110 ports probed: one open, 80 closed (not listed: too many), 29 never answered.
    result, h = udp_scanned(110, [udp_port(53), udp_tally(closed=80, silent=29)])
    device = valid(result.device(h))
    assert udp_ports(device) == {53: "open"}
    assert device["not_shown_udp"] == {"closed": 80, "open|filtered": 29}


def test_a_host_answering_some_ports_unreachable_and_not_others_is_flagged_rate_limited() -> None:
    # Linux sends about one port unreachable a second: 3 came back, 27 closed ports stayed silent.
    result, h = udp_scanned(30, [udp_tally(closed=3, silent=27),
                                 *(udp_port(p, S_CLOSED) for p in (7, 9, 13))])
    device = valid(result.device(h))
    assert device["udp_icmp_limited"] is True
    assert device["not_shown_udp"] == {"open|filtered": 27}


def test_a_host_that_answers_every_closed_port_or_none_is_not_flagged() -> None:
    every = valid(udp_scanned(30, [udp_tally(closed=30, silent=0)])[0].devices()[0])
    assert "udp_icmp_limited" not in every and every["not_shown_udp"] == {"closed": 30}
    result, h = udp_scanned(30, [udp_port(53)])  # a firewall drops all but DNS: no ICMP at all
    silent = valid(result.device(h))
    assert "udp_icmp_limited" not in silent and silent["not_shown_udp"] == {"open|filtered": 29}


def test_a_name_query_answer_and_the_scan_open_on_the_same_port_are_one_entry() -> None:
    result, h = udp_scanned(30, [udp_port(161), udp_tally(closed=0, silent=29)])
    h.udp[161] = ServiceInfo("snmp", "Net-SNMP", banner="Linux lab 6.1")
    device = valid(result.device(h))
    [snmp] = [p for p in device["ports"] if p["port"] == 161]
    assert snmp == {"port": 161, "protocol": "udp", "state": "open", "service": "SNMP", "product": "Net-SNMP",
                    "banner": "Linux lab 6.1"}
    assert device["not_shown_udp"] == {"open|filtered": 29}


def test_a_port_silent_to_the_scan_that_answered_a_query_is_open_not_open_filtered() -> None:
    result, h = udp_scanned(6, [udp_port(53), *(udp_port(p, S_NONE) for p in (123, 137, 500, 1900, 5353)),
                                udp_tally(closed=0, silent=5)])
    h.udp[5353] = ServiceInfo("mdns")
    assert udp_ports(valid(result.device(h))) == {53: "open", 5353: "open", 123: "open|filtered",
                                                  137: "open|filtered", 500: "open|filtered",
                                                  1900: "open|filtered"}


def test_name_answers_without_a_udp_scan_are_listed_open_as_before() -> None:
    result = ScanResult()
    result.mark_up(IP)
    h = result.hosts[IP]
    h.udp[137] = ServiceInfo("netbios-ns")
    device = valid(result.device(h))
    assert udp_ports(device) == {137: "open"} and "not_shown_udp" not in device


def test_a_host_answering_every_udp_port_is_counted_not_listed() -> None:
    result, h = udp_scanned(110, [udp_port(p) for p in range(1, 111)])
    device = valid(result.device(h))
    assert udp_ports(device) == {} and device["not_shown_udp"] == {"open": 110} and "tarpit" not in device
    assert result.open_ports == 0


def test_a_udp_tarpit_is_no_tcp_tarpit_so_the_store_keeps_its_os_guess_and_open_ports(tmp_path: Path) -> None:
    # `tarpit` makes the store drop the open ports and OS guess it saved (forged SYN-ACKs): a
    # host answering every UDP port forges no SYN-ACK.
    result, h = udp_scanned(110, [udp_port(p) for p in range(1, 111)])
    result.add(Result(R_PORT, S_OPEN, 64, 0, 2, 0, IP, 22, 29200, 0, 0, b"\0" * 6, 0, b""), 1000, "tcp")
    assert not h.tarpit and h.states("udp").tarpit
    store = Store(tmp_path / "netscand.db")
    try:
        scan = store.create_scan({"id": "00000000-0000-4000-8000-000000000001", "target": "198.18.0.5",
                                  "profile": "deep", "created_at": "2026-03-15T10:00:00Z"})
        for final in (False, True):
            store.put_devices(scan["id"], [device_row(result, h, profiling=False, final=final)])
        [stored] = store.result(scan["id"])
    finally:
        store.close()
    assert [(p["port"], p["protocol"]) for p in stored["ports"]] == [(22, "tcp")] and "tarpit" not in stored


def test_a_udp_tarpit_of_every_port_keeps_bounded_state() -> None:
    result, h = udp_scanned(65535, [udp_port(p) for p in range(1, 65536)])
    udp = h.states("udp")
    assert len(udp.open) == OPEN_CAP and udp.open_count == 65535
    for state in (S_CLOSED, S_UNREACH, S_NONE):
        for p in range(1, 3000):
            result.add(udp_port(p, state), 65535, "udp")
    assert len(udp.closed) == len(udp.unreachable) == len(udp.silent) == LIST_LIMIT + 1
    device = valid(result.device(h))
    assert len(device["ports"]) == 0 and device["not_shown_udp"] == {"open": 65535}


def test_a_host_first_heard_over_udp_learns_each_protocols_probed_ports() -> None:
    result = ScanResult()
    assert result.add(udp_port(53), 110, "udp") is True
    result.add(Result(R_TALLY, 0, 0, 0, 2, 0, IP, 0, 0, 999, 0, b"\0" * 6, 0, b""), 1000, "tcp")
    h = result.hosts[IP]
    assert (h.states("udp").probed, h.tcp.probed, h.tcp.closed_count, h.tcp.silent_count) == (110, 1000, 999, 1)
    assert valid(result.device(h))["not_shown"] == {"closed": 999, "filtered": 1}


def test_a_tcp_tallys_unreachable_ports_stay_filtered() -> None:
    # A TCP tally's win is no count: its unanswered ports include the ICMP-refused ones.
    result = ScanResult()
    result.add(Result(R_TALLY, 0, 0, 0, 1, 0, IP, 0, 1024, 0, 1, b"\0" * 6, 0, b""), 1, "tcp")
    result.add(Result(R_PORT, S_UNREACH, 0, 0, 1, 0, IP, 25, 0, 0, 0, b"\0" * 6, 0, b""), 1, "tcp")
    device = valid(result.device(result.hosts[IP]))
    assert "not_shown" not in device and device["ports"][0] == {"port": 25, "protocol": "tcp", "state": "filtered",
                                                               "service": "SMTP"}


def test_the_store_keeps_udp_counts_and_the_flag_once_final(tmp_path: Path) -> None:
    result, h = udp_scanned(110, [udp_port(53), udp_tally(closed=3, silent=106)])
    store = Store(tmp_path / "netscand.db")
    try:
        scan = store.create_scan({"id": "00000000-0000-4000-8000-000000000001", "target": "198.18.0.5",
                                  "profile": "deep", "created_at": "2026-03-15T10:00:00Z"})
        store.put_devices(scan["id"], [device_row(result, h, profiling=False, final=False)])
        [running] = store.result(scan["id"])
        assert "not_shown_udp" not in running and "udp_icmp_limited" not in running
        store.put_devices(scan["id"], [device_row(result, h, profiling=False, final=True)])
        [stored] = store.result(scan["id"])
    finally:
        store.close()
    assert stored["not_shown_udp"] == {"closed": 3, "open|filtered": 106} and stored["udp_icmp_limited"] is True
    assert udp_ports(stored) == {53: "open"}
    schema_validator({"$ref": "#/components/schemas/Device"}).validate(stored)
    assert openapi_document()["components"]["schemas"]["Port"]["properties"]["state"]["enum"][-1] == "open|filtered"


def shown(device: dict, protocol: str) -> int:
    """Ports of `protocol` the device accounts for: listed, and counted under its not_shown."""
    counted = device.get("not_shown_udp" if protocol == "udp" else "not_shown", {})
    return sum(p["protocol"] == protocol for p in device["ports"]) + sum(counted.values())


def test_a_silent_unlisted_port_that_answered_identification_is_counted_once() -> None:
    # 104 probed: 8 closed (listed), 96 silent (too many to list); UDP detection then asked 123,
    # one of those silent ports, and NTP answered.
    result, h = udp_scanned(104, [udp_tally(closed=8, silent=96), *(udp_port(p, S_CLOSED) for p in range(1, 9))])
    _apply_udp({"198.18.0.5": h}, {}, {("198.18.0.5", 123): ServiceInfo("ntp")}, frozenset((*range(1, 9), *range(100, 196))))
    device = valid(result.device(h))
    assert udp_ports(device)[123] == "open" and device["not_shown_udp"] == {"open|filtered": 95}
    assert shown(device, "udp") == 104


def test_each_protocols_listed_and_counted_ports_are_the_ports_it_probed() -> None:
    result, h = udp_scanned(104, [udp_port(53), udp_tally(closed=40, silent=60, filtered=3),
                                  *(udp_port(p, S_UNREACH) for p in (500, 501, 502))])
    result.add(Result(R_TALLY, 0, 0, 0, 2, 0, IP, 0, 0, 990, 8, b"\0" * 6, 0, b""), 1000, "tcp")
    result.add(Result(R_PORT, S_OPEN, 64, 0, 2, 0, IP, 22, 29200, 0, 0, b"\0" * 6, 0, b""), 1000, "tcp")
    result.add(Result(R_PORT, S_OPEN, 64, 0, 2, 0, IP, 80, 29200, 0, 0, b"\0" * 6, 0, b""), 1000, "tcp")
    device = valid(result.device(h))
    assert (shown(device, "tcp"), shown(device, "udp")) == (1000, 104)


def test_a_host_that_sent_only_unreachables_is_not_up() -> None:
    # No discovery, routed: the router answers ICMP host unreachable for an absent address.
    result = ScanResult()
    assert result.add(udp_tally(closed=0, silent=103, filtered=1), 104, "udp") is False
    assert result.add(udp_port(53, S_UNREACH), 104, "udp") is False
    assert result.up_count == 0 and result.devices() == []
    assert result.add(udp_tally(closed=1, silent=103, shard=1), 104, "udp") is True  # a port unreachable: its own


def test_a_host_that_drops_a_few_ports_but_answers_the_rest_closed_is_not_rate_limited() -> None:
    # The lab's s2: no ICMP rate limit; nftables rejects 5060 (admin-prohibited), drops 500.
    result, h = udp_scanned(104, [udp_port(137), udp_tally(closed=101, silent=1, filtered=1),
                                  udp_port(5060, S_UNREACH), udp_port(500, S_NONE)])
    device = valid(result.device(h))
    assert "udp_icmp_limited" not in device and device["not_shown_udp"] == {"closed": 101}
    assert udp_ports(device) == {137: "open", 500: "open|filtered", 5060: "filtered"}
