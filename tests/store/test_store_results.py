"""Devices and ports: upserts as results arrive, and the result document's order and shape."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from netscand.store import Store

ScanMaker = Callable[..., dict[str, Any]]
NGINX = "cpe:/a:nginx:nginx:1.24.0"


def _open(port: int, **details: Any) -> dict[str, Any]:
    return {"port": port, "protocol": "tcp", "state": "open", **details}


def test_device_fields_and_extra(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan()["id"]
    store.put_device(scan_id, "198.18.0.1", mac="AA:BB:CC:DD:EE:FF", extra={"not_shown": {"closed": 995}})
    store.put_device(scan_id, "198.18.0.1", hostname="gateway.local", vendor="Cisco Systems",
                     extra={"hostnames": ["gateway.local", "gw"]})
    store.put_device(scan_id, "198.18.0.1", os_guess="IOS 15.x", mac=None)
    assert store.result(scan_id) == [{
        "ip": "198.18.0.1", "mac": "AA:BB:CC:DD:EE:FF", "hostname": "gateway.local",
        "vendor": "Cisco Systems", "os_guess": "IOS 15.x", "not_shown": {"closed": 995},
        "hostnames": ["gateway.local", "gw"], "ports": [],
    }]


def test_extra_keys_are_replaced_not_deep_merged(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan()["id"]
    store.put_device(scan_id, "198.18.0.1", extra={"not_shown": {"closed": 995}})
    store.put_device(scan_id, "198.18.0.1", extra={"not_shown": {"filtered": 990}})
    assert store.result(scan_id)[0]["not_shown"] == {"filtered": 990}


def test_timed_out_shows_only_when_true(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan()["id"]
    store.put_device(scan_id, "198.18.0.1")
    assert "timed_out" not in store.result(scan_id)[0]
    store.put_device(scan_id, "198.18.0.1", timed_out=True)
    store.put_device(scan_id, "198.18.0.1", hostname="h")  # None leaves it as it was
    assert store.result(scan_id)[0]["timed_out"] is True
    store.put_device(scan_id, "198.18.0.1", timed_out=False)
    assert "timed_out" not in store.result(scan_id)[0]


def test_put_ports_creates_the_device(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan()["id"]
    store.put_ports(scan_id, "198.18.0.2", [_open(22, service="ssh")])
    assert store.result(scan_id) == [{
        "ip": "198.18.0.2", "mac": None, "hostname": None, "vendor": None, "os_guess": None,
        "ports": [{"port": 22, "protocol": "tcp", "state": "open", "service": "ssh"}],
    }]


def test_put_ports_is_idempotent_and_merges(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan()["id"]
    store.put_ports(scan_id, "198.18.0.2", [_open(443, service="https")])
    store.put_ports(scan_id, "198.18.0.2", [_open(443, service="https")])
    assert store.counts(scan_id) == (1, 1)
    store.put_ports(scan_id, "198.18.0.2", [_open(443, product="nginx", version="1.24.0", cpe=NGINX)])
    store.put_ports(scan_id, "198.18.0.2", [_open(443, service=None, banner="HTTP/1.1 200 OK")])
    store.put_ports(scan_id, "198.18.0.2", [_open(443, version="1.25.3")])
    assert store.result(scan_id)[0]["ports"] == [{
        "port": 443, "protocol": "tcp", "state": "open", "service": "https", "product": "nginx",
        "version": "1.25.3", "banner": "HTTP/1.1 200 OK", "cpe": NGINX,
    }]
    assert store.counts(scan_id) == (1, 1)


def test_same_number_other_protocol_is_another_port(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan()["id"]
    udp = {"port": 53, "protocol": "udp", "state": "open|filtered"}
    store.put_ports(scan_id, "198.18.0.2", [_open(53), udp])
    ports = store.result(scan_id)[0]["ports"]
    assert [(p["port"], p["protocol"]) for p in ports] == [(53, "tcp"), (53, "udp")]


def test_state_follows_the_latest_report(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan()["id"]
    store.put_ports(scan_id, "198.18.0.2", [{"port": 25, "protocol": "tcp", "state": "filtered"}])
    store.put_ports(scan_id, "198.18.0.2", [_open(25)])
    assert store.result(scan_id)[0]["ports"][0]["state"] == "open"


def test_devices_sorted_by_numeric_ip_and_ports_by_number(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan()["id"]
    for ip in ("198.18.0.10", "198.18.1.0", "198.18.0.9", "10.0.0.200", "198.18.0.100", "9.255.255.255"):
        store.put_ports(scan_id, ip, [_open(8080), _open(22), _open(443), _open(3389)])
    devices = store.result(scan_id)
    assert [d["ip"] for d in devices] == [
        "9.255.255.255", "10.0.0.200", "198.18.0.9", "198.18.0.10", "198.18.0.100", "198.18.1.0",
    ]
    assert all([p["port"] for p in d["ports"]] == [22, 443, 3389, 8080] for d in devices)


def test_addresses_are_stored_in_canonical_form(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan()["id"]
    store.put_device(scan_id, "198.18.0.9", mac="02:00:00:00:00:09")
    store.put_ports(scan_id, "198.18.0.9", [_open(22)])
    assert store.counts(scan_id) == (1, 1)
    with pytest.raises(ValueError):
        store.put_device(scan_id, "198.18.0.256")


def test_counts_count_open_ports_only(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan()["id"]
    store.put_ports(scan_id, "198.18.0.1", [_open(22), {"port": 23, "protocol": "tcp", "state": "closed"}])
    store.put_ports(scan_id, "198.18.0.2", [_open(80), {"port": 81, "protocol": "tcp", "state": "filtered"}])
    store.put_device(scan_id, "198.18.0.3")
    assert store.counts(scan_id) == (3, 2)
    assert store.counts(make_scan()["id"]) == (0, 0)


def test_scans_do_not_share_results(store: Store, make_scan: ScanMaker) -> None:
    first, second = make_scan()["id"], make_scan()["id"]
    store.put_ports(first, "198.18.0.1", [_open(22)])
    store.put_ports(second, "198.18.0.1", [_open(80)])
    assert [p["port"] for p in store.result(first)[0]["ports"]] == [22]
    assert [p["port"] for p in store.result(second)[0]["ports"]] == [80]


def test_cves_ride_along_with_a_port(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan(profile="deep")["id"]
    cves = [{"id": "CVE-2023-44487", "cvss": 7.5, "summary": "HTTP/2 rapid reset"}]
    store.put_ports(scan_id, "198.18.0.1", [_open(443, cpe=NGINX)])
    store.put_ports(scan_id, "198.18.0.1", [_open(443, cves=cves)])
    assert store.result(scan_id)[0]["ports"][0]["cves"] == cves


def test_refusals(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan()["id"]
    with pytest.raises(KeyError):
        store.put_device("no-such-scan", "198.18.0.1")
    with pytest.raises(KeyError):
        store.put_ports("no-such-scan", "198.18.0.1", [_open(22)])
    with pytest.raises(ValueError, match="own keys: ports"):
        store.put_device(scan_id, "198.18.0.1", extra={"ports": []})
    with pytest.raises(ValueError, match="1-65535"):
        store.put_ports(scan_id, "198.18.0.1", [_open(0)])
    with pytest.raises(ValueError, match="unknown port field"):
        store.put_ports(scan_id, "198.18.0.1", [_open(22, colour="red")])
    with pytest.raises(ValueError, match="state"):
        store.put_ports(scan_id, "198.18.0.1", [{"port": 22, "protocol": "tcp"}])
    assert store.result(scan_id) == []


def test_calls_from_a_thread_executor(store: Store, make_scan: ScanMaker) -> None:
    scan_id = make_scan()["id"]

    def report(host: int) -> tuple[int, int]:
        ip = f"198.18.{host // 256}.{host % 256}"
        store.put_device(scan_id, ip, hostname=f"h{host}")
        store.put_ports(scan_id, ip, [_open(22), _open(80)])
        return store.counts(scan_id)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(report, range(200)))
    assert store.counts(scan_id) == (200, 400)
    assert len(store.result(scan_id)) == 200
