"""ScanResult: hosts built from engine records, tarpit classification and the device document."""

from __future__ import annotations

from pathlib import Path

import jsonschema
from hypothesis import given
from hypothesis import strategies as st

from netscand.api.openapi import document as openapi_document
from netscand.engine.shm import R_DONE, R_HOST, R_PORT, R_TALLY, S_CLOSED, S_NONE, S_OPEN, Result
from netscand.scan.persist import device_row
from netscand.scan.result import LIST_LIMIT, OPEN_CAP, Host, ScanResult, document
from netscand.store import Store

IP = 0xC6120005  # 198.18.0.5
MAC = bytes.fromhex("0200c6120005")
LINUX_OPTS = bytes.fromhex("020405b40402080a000000000000000001030307")  # MSS, SACK, TS, NOP, WS 7


def port(ip: int, number: int, state: int = S_OPEN, gen: int = 1) -> Result:
    return Result(R_PORT, state, 64, 0, gen, 0, ip, number, 64240, 0, 0, b"\0" * 6, 0, LINUX_OPTS)


def tally(ip: int, shard: int, closed: int, unanswered: int = 0, gen: int = 1) -> Result:
    return Result(R_TALLY, 0, 0, 0, gen, shard, ip, 0, 0, closed, unanswered, b"\0" * 6, 0, b"")


def arp(ip: int) -> Result:
    return Result(R_HOST, 0, 0, 0, 1, 0, ip, 0, 0, 0, 0, MAC, 0, b"")


def scanned(nports: int, open_ports: range | list[int], closed: int = 0) -> tuple[ScanResult, Host]:
    """A host probed on `nports` ports (found by ARP first, as on-link hosts are) that answered
    open on `open_ports` and closed on `closed` more."""
    result = ScanResult()
    result.add(arp(IP), 0, "tcp")
    result.probed((IP,), nports, "tcp")
    for p in open_ports:
        result.add(port(IP, p), 0, "tcp")
    if closed:
        result.add(tally(IP, 0, closed), 0, "tcp")
    return result, result.hosts[IP]


# --- tarpits ----------------------------------------------------------------------------------


def test_a_host_open_on_every_port_of_a_deep_scan_is_a_tarpit_with_bounded_state() -> None:
    result, h = scanned(65535, range(1, 65536))
    for p in range(1, 3000):  # a shard issued again after a worker restart: counted once
        result.add(port(IP, p), 0, "tcp")
    assert h.tarpit
    assert len(h.tcp.open) == OPEN_CAP  # fingerprints kept; the rest counted in an 8 KiB bitmap
    assert h.tcp.open_count == 65535
    assert h.tcp.silent_count == 0
    device = result.device(h, profiling=True)
    assert device["tarpit"] is True
    assert device["ports"] == []
    assert device["not_shown"] == {"open": 65535}
    assert device["os_guess"] is None and "os_confidence" not in device
    assert device["vendor"] == "Randomized (locally administered)"  # from the MAC, which a tarpit keeps


def test_a_tarpit_device_is_what_the_api_documents() -> None:
    schema = {**openapi_document(), "$ref": "#/components/schemas/Device"}
    for nports, opened in ((65535, range(1, 65536)), (100, range(1, 91))):
        result, h = scanned(nports, opened, closed=nports - len(opened))
        assert h.tarpit
        jsonschema.validate(result.device(h, profiling=True), schema)


def test_one_port_past_the_cap_makes_a_tarpit() -> None:
    assert not scanned(65535, range(1, OPEN_CAP + 1))[1].tarpit
    assert scanned(65535, range(1, OPEN_CAP + 2))[1].tarpit


def test_quick_and_normal_scans_judge_by_share() -> None:
    # Quick (top 100): a tarpit answers all 100; 90 is enough, 89 is not.
    assert scanned(100, range(1, 101))[1].tarpit
    assert scanned(100, range(1, 91), closed=10)[1].tarpit
    assert not scanned(100, range(1, 90), closed=11)[1].tarpit
    # Normal (top 1000).
    assert scanned(1000, range(1, 1001))[1].tarpit
    assert not scanned(1000, range(1, 800), closed=201)[1].tarpit


def test_busy_real_servers_are_not_tarpits() -> None:
    # Far busier than any real host: 40 of the top 100, 300 of the top 1000, 1024 of 65535.
    for nports, opened in ((100, 40), (1000, 300), (65535, OPEN_CAP)):
        result, h = scanned(nports, range(1, opened + 1), closed=nports - opened)
        assert not h.tarpit
        device = result.device(h, profiling=True)
        assert "tarpit" not in device
        assert sum(p["state"] == "open" for p in device["ports"]) == opened


def test_a_small_sample_is_judged_by_the_cap_alone() -> None:
    # A custom scan of 50 ports, all open: too few to call it a tarpit; listed as found.
    result, h = scanned(50, range(1, 51))
    assert not h.tarpit
    assert len(result.device(h)["ports"]) == 50


def test_a_tarpit_adds_nothing_to_the_open_ports_total() -> None:
    result, tarpit = scanned(100, range(1, 101))
    result.probed((IP + 1,), 100, "tcp")
    result.add(port(IP + 1, 22, gen=2), 0, "tcp")
    result.add(tally(IP + 1, 0, 99, gen=2), 0, "tcp")
    doc = document("id", "completed", result.devices(), 1.0)
    assert doc["devices_found"] == 2
    assert doc["open_ports_total"] == 1


def test_a_host_turning_tarpit_mid_scan_stops_listing_open_ports() -> None:
    result, h = scanned(1000, range(1, 500))
    assert [h] == result.take_dirty()
    assert len(result.device(h)["ports"]) == 499 and not h.tarpit
    for p in range(500, 901):
        result.add(port(IP, p), 0, "tcp")
    assert h.tarpit
    assert result.take_dirty() == [h]
    device = result.device(h)
    assert (device["ports"], device["not_shown"], device["tarpit"]) == ([], {"open": 900, "filtered": 100}, True)


# --- lazy hosts ---------------------------------------------------------------------------------


def test_a_host_learns_its_probed_ports_when_it_first_answers() -> None:
    result = ScanResult()
    result.probed((IP,), 100, "tcp")  # not a host yet: nothing is made
    assert result.hosts == {}
    assert result.add(tally(IP, 0, closed=99), 100, "tcp") is True
    assert result.add(port(IP, 22), 100, "tcp") is False  # already up
    h = result.hosts[IP]
    assert (h.tcp.probed, h.tcp.closed_count, h.tcp.silent_count, h.tcp.open_count) == (100, 99, 0, 1)


def test_timing_out_marks_only_hosts_that_exist() -> None:
    result = ScanResult()
    result.add(port(IP, 22), 10, "tcp")
    result.timed_out(tuple(range(IP - 100, IP + 100)))
    assert list(result.hosts) == [IP]
    assert result.hosts[IP].timed_out


def test_listed_closed_and_filtered_ports_stay_bounded() -> None:
    result = ScanResult()
    for p in range(1, 5000):
        result.add(port(IP, p, S_CLOSED), 10000, "tcp")
        result.add(port(IP, p + 5000, S_NONE), 10000, "tcp")
    h = result.hosts[IP]
    assert len(h.tcp.closed) == len(h.tcp.silent) == LIST_LIMIT + 1


# --- any records ----------------------------------------------------------------------------------

_records = st.lists(st.tuples(
    st.sampled_from((R_PORT, R_TALLY, R_HOST, R_DONE)),
    st.sampled_from((S_OPEN, S_CLOSED, S_NONE, 7)),
    st.integers(0, 3),  # host
    st.integers(0, 65535),  # port
    st.integers(0, 3),  # shard
    st.integers(0, 70000), st.integers(0, 70000),  # tally counts, whatever a worker claims
), max_size=60)


@given(_records, st.integers(0, 70000), st.booleans())
def test_any_records_give_a_well_formed_document(records: list[tuple], nports: int, profiling: bool) -> None:
    result = ScanResult()
    for kind, state, host, number, shard, a, b in records:
        r = Result(kind, state, 64, 0, 1, shard, IP + host, number, 1024, a, b, MAC, 0, LINUX_OPTS)
        result.add(r, nports, "tcp")
    doc = document("id", "running", result.devices(profiling), 0.5)
    assert doc["devices_found"] == len(result.up_hosts)
    for device, h in zip(doc["devices"], result.up_hosts):
        assert len(device["ports"]) <= OPEN_CAP + 2 * (LIST_LIMIT + 1)
        assert all(count > 0 for count in device.get("not_shown", {}).values())
        if h.tarpit:
            assert device["tarpit"] is True and device["os_guess"] is None
            assert all(p["state"] != "open" for p in device["ports"])
    assert result.take_dirty() == result.up_hosts


# --- the store keeps the flag ---------------------------------------------------------------------


def _save(store: Store, scan_id: str, result: ScanResult, h: Host, final: bool) -> None:
    """What the orchestrator saves of a device: only its open ports while the scan runs."""
    store.put_devices(scan_id, [device_row(result, h, profiling=True, final=final)])


def test_the_store_forgets_what_a_tarpit_answered_before_it_showed_itself(tmp_path: Path) -> None:
    # Quick scan: 60 SYN-ACKs in, saved by a flush as an ordinary host's open ports (with an OS
    # guessed from them); then the other 40 come in too.
    result, h = scanned(100, range(1, 61))
    store = Store(tmp_path / "netscand.db")
    try:
        scan = store.create_scan({"id": "00000000-0000-4000-8000-000000000001", "target": "198.18.0.5",
                                  "profile": "quick", "created_at": "2026-03-15T10:00:00Z"})
        _save(store, scan["id"], result, h, final=False)
        [early] = store.result(scan["id"])
        assert len(early["ports"]) == 60 and early["os_guess"] and "tarpit" not in early
        for p in range(61, 101):
            result.add(port(IP, p), 0, "tcp")
        _save(store, scan["id"], result, h, final=True)
        [stored] = store.result(scan["id"])
    finally:
        store.close()
    assert stored["tarpit"] is True
    assert stored["not_shown"] == {"open": 100}
    assert stored["ports"] == []
    assert stored["os_guess"] is None and "os_confidence" not in stored


@given(_records, st.integers(0, 2000))
def test_running_counts_equal_what_the_hosts_say(records: list[tuple], nports: int) -> None:
    # hosts_found and ports_found come from these counters every flush: they must agree with a
    # walk over every host, which they replace.
    result = ScanResult()
    for i, (kind, state, host, number, shard, a, b) in enumerate(records):
        if i == len(records) // 2:
            result.mark_up(IP + 9)
            result.probed((IP, IP + 1, IP + 9), nports, "tcp")
        result.add(Result(kind, state, 64, 0, 1, shard, IP + host, number, 1024, a, b, MAC, 0, LINUX_OPTS), nports, "tcp")
    up = result.up_hosts
    assert result.up_count == len(up)
    assert result.open_ports == sum(h.tcp.open_count for h in up if not h.tarpit)


def test_a_flush_takes_at_most_its_share_of_the_changed_hosts_and_leaves_the_rest() -> None:
    result = ScanResult()
    for ip in range(0xC6120000, 0xC6120000 + 1000):
        result.mark_up(ip)
    taken = result.take_dirty(512)
    assert len(taken) == 512 and [h.ip for h in taken] == sorted(h.ip for h in taken)
    rest = result.take_dirty()
    assert len(rest) == 488 and not {h.ip for h in taken} & {h.ip for h in rest}
    assert result.take_dirty(512) == []
