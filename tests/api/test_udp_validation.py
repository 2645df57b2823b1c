"""udp_ports of the start body: custom's only, written and bounded as `ports` is, each fault a
422 naming it (over HTTP, and in the documented schema where JSON Schema can say it)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from netscand.api import validate
from netscand.api.problems import Problem
from netscand.cli import ctl
from netscand.scan.ports import MAX_PORT_ENTRIES
from tests.api.conftest import Api, assert_problem, schema_validator, stored

START_SCHEMA = schema_validator({"$ref": "#/components/schemas/StartRequest"})
T = "198.18.0.1"
CUSTOM = {"target": T, "profile": "custom", "ports": [22]}


@pytest.fixture(scope="module")
def unix(module_api: Api) -> httpx.Client:
    return module_api.unix()


# (body, whether the documented schema refuses it too)
BAD: list[tuple[dict[str, Any], bool]] = [
    (CUSTOM | {"udp_ports": []}, True),
    (CUSTOM | {"udp_ports": "53,161"}, True),
    (CUSTOM | {"udp_ports": [0]}, True),
    (CUSTOM | {"udp_ports": [65536]}, True),
    (CUSTOM | {"udp_ports": [True]}, True),
    (CUSTOM | {"udp_ports": ["snmp"]}, True),
    (CUSTOM | {"udp_ports": ["161-53"]}, False),
    (CUSTOM | {"udp_ports": ["1-70000"]}, False),
    (CUSTOM | {"udp_ports": list(range(1, MAX_PORT_ENTRIES + 2))}, False),
    ({"target": T, "udp_ports": [53]}, True),  # normal sets it itself
    ({"target": T, "profile": "deep", "udp_ports": [53]}, True),
]


@pytest.mark.parametrize(("body", "schema_refuses"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_bad_udp_ports_is_a_422_naming_it(unix: httpx.Client, body: dict[str, Any], schema_refuses: bool) -> None:
    r = unix.post("/api/v1/scans/start", content=orjson.dumps(body), headers={"Content-Type": "application/json"})
    problem = assert_problem(r, 422, field_="udp_ports")
    assert problem["detail"].startswith("udp_ports")
    assert START_SCHEMA.is_valid(body) is not schema_refuses


def test_a_reversed_range_says_so() -> None:
    with pytest.raises(Problem) as caught:
        validate.start_request(CUSTOM | {"udp_ports": [53, "161-53"]})
    assert (caught.value.field, caught.value.detail) == ("udp_ports", "udp_ports: reversed port range '161-53'")


def test_profile_custom_takes_udp_ports_and_custom_alone() -> None:
    req = validate.start_request(CUSTOM | {"udp_ports": [53, "160-162"]})
    assert req.udp_ports == [53, "160-162"] and req.options()["udp_ports"] == [53, "160-162"]
    with pytest.raises(Problem) as caught:
        validate.start_request({"target": T, "profile": "quick", "udp_ports": [53]})
    assert caught.value.detail.startswith("udp_ports can only be given with profile custom")


@pytest.mark.parametrize(("body", "field"), [
    ({"timeout_ms": 0, "profile": "custom", "ports": [22], "udp_ports": ["9-1"], "target": T}, "udp_ports"),
    ({"profile": "custom", "ports": ["9-1"], "udp_ports": ["9-1"], "target": T}, "ports"),
    ({"site_id": "x", "profile": "custom", "ports": [22], "udp_ports": ["9-1"], "target": T}, "site_id"),
])
def test_udp_ports_is_checked_in_its_documented_place(body: dict[str, Any], field: str) -> None:
    for order in (body, dict(reversed(body.items()))):
        with pytest.raises(Problem) as caught:
            validate.start_request(order)
        assert caught.value.field == field, order


def test_netscanctl_start_sends_udp_ports_as_it_sends_ports(module_api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--socket", str(module_api.socket_path), "--json", "start", T, "--profile", "custom",
            "--ports", "22", "--udp-ports", "53, 160-162"]
    assert ctl.main(argv) == 0
    out = capsys.readouterr().out  # the API's log lines too, as it runs in this process
    scan_id = orjson.loads(out[out.index("{\n"):out.index("\n}") + 2])["id"]
    assert stored(module_api, scan_id)["options"] == {"ports": [22], "udp_ports": [53, "160-162"], "remote": False}


def test_netscanctl_start_sends_profiling_and_cve_match(module_api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--socket", str(module_api.socket_path), "--json", "start", T, "--profile", "custom",
            "--ports", "22", "--profiling", "--cve-match"]
    assert ctl.main(argv) == 0
    out = capsys.readouterr().out
    scan_id = orjson.loads(out[out.index("{\n"):out.index("\n}") + 2])["id"]
    assert stored(module_api, scan_id)["options"] == {"ports": [22], "enable_profiling": True,
                                                      "enable_cve_match": True, "remote": False}
