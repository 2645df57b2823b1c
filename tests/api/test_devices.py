"""The device routes over an inventory the real merge wrote: filters reach the store as the query
said them, every query parameter is checked (422 naming it, whatever the text), a device reads
back with its history, and both need scope read."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from netscand.api.devices import device_query
from netscand.api.models import DeviceQuery
from netscand.api.problems import INVALID_FIELD, NOT_FOUND, Problem
from netscand.store import sites
from netscand.store.compare import Covered
from netscand.store.inventory import merge
from tests.api.conftest import Api, assert_problem

DEVICES = "/api/v1/devices"
COVERED = Covered(((0xC6120000, 0xC61200FF),), frozenset({22, 80}), frozenset({161}), services=True, cves=True)


def host(n: int, *ports: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"ip": f"198.18.0.{n}", "mac": f"00:1B:21:00:00:{n:02X}", "hostname": f"host-{n}.lab",
            "vendor": "Dell Inc.", "os_guess": "Linux 6.x", "ports": list(ports), **fields}


SSH = {"port": 22, "protocol": "tcp", "state": "open", "service": "ssh", "product": "OpenSSH", "version": "9.2p1",
       "cves": [{"id": "CVE-2024-6387", "status": "vulnerable", "severity": "high", "cvss": 8.1}]}
SNMP = {"port": 161, "protocol": "udp", "state": "open", "service": "snmp"}


@pytest.fixture(scope="module")
def inventory(module_api: Api) -> dict[str, str]:
    site = module_api.store.call("t", sites.create, "office")["id"]
    for site_id, found in ((site, [host(5, SSH), host(6, SNMP, os_guess="Windows 11")]), (None, [host(5)])):
        module_api.store.call("t", merge, scan_id=str(uuid.uuid4()), site_id=site_id, found=found,
                              covered=COVERED, at="2026-12-01T10:00:00Z")
    return {"site": site}


def listed(client: httpx.Client, **params: Any) -> list[str]:
    r = client.get(DEVICES, params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == len(body["devices"])
    return [f"{d['site_id'] is not None}:{d['ip']}" for d in body["devices"]]


def test_filters_as_the_query_says_them(module_api: Api, inventory: dict[str, str]) -> None:
    unix = module_api.unix()
    assert listed(unix) == ["False:198.18.0.5", "True:198.18.0.5", "True:198.18.0.6"]  # no site first ('')
    assert listed(unix, site_id=inventory["site"].upper()) == ["True:198.18.0.5", "True:198.18.0.6"]
    assert listed(unix, address="198.18.0.6") == listed(unix, address="198.18.0.6/32") == ["True:198.18.0.6"]
    assert listed(unix, address="198.18.0.0/24", port="22") == ["True:198.18.0.5"]
    assert listed(unix, port="161/udp") == ["True:198.18.0.6"] and listed(unix, port="161/tcp") == []
    assert listed(unix, q="HOST-6") == listed(unix, os="windows") == ["True:198.18.0.6"]
    assert listed(unix, service="SSH") == listed(unix, product="openssh") == ["True:198.18.0.5"]
    assert listed(unix, cve="cve-2024-6387") == listed(unix, min_severity="high") == ["True:198.18.0.5"]
    assert listed(unix, min_severity="critical") == []
    assert len(listed(unix, seen_since="2026-12-01T10:00:00Z", present="true")) == 3
    assert listed(unix, not_seen_since="2026-12-01T10:00:00Z") == listed(unix, present="false") == []
    page = unix.get(DEVICES, params={"per_page": 1, "page": 2}).json()
    assert (page["total"], page["page"], page["per_page"], len(page["devices"])) == (3, 2, 1, 1)


def test_a_device_with_its_history(module_api: Api, inventory: dict[str, str]) -> None:
    unix = module_api.unix()
    (summary,) = unix.get(DEVICES, params={"site_id": inventory["site"], "port": "22"}).json()["devices"]
    r = unix.get(f"{DEVICES}/{summary['id']}")
    assert r.status_code == 200, r.text
    device = r.json()
    assert {k: device[k] for k in summary} == summary
    assert device["cves"] == [{"id": "CVE-2024-6387", "severity": "high", "port": 22, "protocol": "tcp"}]
    assert device["addresses"] == [{"ip": "198.18.0.5", "first_seen": "2026-12-01T10:00:00Z",
                                    "last_seen": "2026-12-01T10:00:00Z"}]
    assert [c["kind"] for c in device["changes"]] == ["device_appeared"] and device["more_changes"] is False
    for missing in (str(uuid.uuid4()), "not-an-id"):
        assert_problem(unix.get(f"{DEVICES}/{missing}"), 404, NOT_FOUND)


@pytest.mark.parametrize(("query", "field"), [
    ("site_id=x", "site_id"), ("address=198.18.0.5/24", "address"), ("address=banana", "address"),
    ("address=" + "1" * 44, "address"), ("q=", "q"), ("q=" + "x" * 101, "q"), ("port=0", "port"),
    ("port=65536", "port"), ("port=22/sctp", "port"), ("port=x", "port"), ("port=22/", "port"),
    ("service=", "service"), ("product=", "product"), ("os=", "os"), ("cve=CVE-24-1", "cve"),
    ("min_severity=none", "min_severity"), ("seen_since=yesterday", "seen_since"),
    ("not_seen_since=2026-12-01T10:00:00", "not_seen_since"), ("present=yes", "present"), ("page=0", "page"),
    ("per_page=101", "per_page"), ("color=red", "color"), ("port=22&port=80", "port"),
])
def test_a_bad_parameter_is_422_naming_it(module_api: Api, query: str, field: str) -> None:
    assert_problem(module_api.unix().get(f"{DEVICES}?{query}"), 422, INVALID_FIELD, field)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(DeviceQuery.__struct_fields__), st.text(max_size=60))
def test_any_value_of_any_parameter_is_read_or_refused_naming_it(name: str, value: str) -> None:
    try:
        device_query(QueryParams([(name, value)]))
    except Problem as problem:
        assert (problem.status, problem.field) == (422, name)


def test_devices_need_scope_read(module_api: Api, inventory: dict[str, str]) -> None:
    reader = module_api.tcp(module_api.token("read", "device-reader"))
    assert reader.get(DEVICES).status_code == 200
    assert_problem(module_api.tcp().get(DEVICES), 401)
