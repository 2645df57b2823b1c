"""The pacing fields of the start body: stealth_level (stealth's), host_gap_ms (stealth's and
custom's, where it turns per-host pacing on), jitter_ms and source_ports (only with pacing), each
fault a 422 naming it (over HTTP, and in the documented schema where JSON Schema can say it);
what a valid one stores; netscanctl start sending them."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from netscand.api import validate
from netscand.api.problems import Problem
from netscand.cli import ctl
from tests.api.conftest import Api, assert_problem, schema_validator, stored

START_SCHEMA = schema_validator({"$ref": "#/components/schemas/StartRequest"})
T = "198.18.0.1"
STEALTH = {"target": T, "profile": "stealth"}
CUSTOM = {"target": T, "profile": "custom", "ports": [22]}


@pytest.fixture(scope="module")
def unix(module_api: Api) -> httpx.Client:
    return module_api.unix()


# (body, the field the 422 must name, whether the documented schema refuses it too)
BAD: list[tuple[dict[str, Any], str, bool]] = [
    (STEALTH | {"stealth_level": "loud"}, "stealth_level", True),
    (STEALTH | {"stealth_level": "Quiet"}, "stealth_level", True),
    (STEALTH | {"stealth_level": 1}, "stealth_level", True),
    ({"target": T, "stealth_level": "quiet"}, "stealth_level", True),  # normal: steady
    (CUSTOM | {"stealth_level": "quiet"}, "stealth_level", True),  # custom paces by host_gap_ms
    (STEALTH | {"host_gap_ms": 0}, "host_gap_ms", True),
    (STEALTH | {"host_gap_ms": 3_600_001}, "host_gap_ms", True),
    (STEALTH | {"host_gap_ms": 3500.5}, "host_gap_ms", True),
    (STEALTH | {"host_gap_ms": "3500"}, "host_gap_ms", True),
    (STEALTH | {"host_gap_ms": True}, "host_gap_ms", True),
    ({"target": T, "profile": "deep", "host_gap_ms": 3500}, "host_gap_ms", True),
    (STEALTH | {"jitter_ms": -1}, "jitter_ms", True),
    (STEALTH | {"jitter_ms": 3_600_001}, "jitter_ms", True),
    ({"target": T, "profile": "quick", "jitter_ms": 10}, "jitter_ms", True),
    (CUSTOM | {"jitter_ms": 10}, "jitter_ms", True),  # custom without host_gap_ms is not paced
    (CUSTOM | {"host_gap_ms": None, "jitter_ms": 10}, "jitter_ms", True),
    (STEALTH | {"source_ports": 40000}, "source_ports", True),
    (STEALTH | {"source_ports": "40000"}, "source_ports", True),
    (STEALTH | {"source_ports": "40000-"}, "source_ports", True),
    (STEALTH | {"source_ports": " 40000-40010"}, "source_ports", True),
    (STEALTH | {"source_ports": "1023-2000"}, "source_ports", False),  # privileged
    (STEALTH | {"source_ports": "61000-61440"}, "source_ports", False),  # unpaced plans' blocks
    (STEALTH | {"source_ports": "40000-40000"}, "source_ports", False),  # one port
    (STEALTH | {"source_ports": "40010-40000"}, "source_ports", False),
    (CUSTOM | {"source_ports": "40000-40010"}, "source_ports", True),
    ({"target": T, "source_ports": "40000-40010"}, "source_ports", True),
]


@pytest.mark.parametrize(("body", "field", "schema_refuses"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_bad_pacing_field_is_a_422_naming_it(unix: httpx.Client, body: dict[str, Any], field: str,
                                               schema_refuses: bool) -> None:
    r = unix.post("/api/v1/scans/start", content=orjson.dumps(body), headers={"Content-Type": "application/json"})
    problem = assert_problem(r, 422, field_=field)
    assert problem["detail"].startswith(field)
    assert START_SCHEMA.is_valid(body) is not schema_refuses


@pytest.mark.parametrize("body", [
    STEALTH | {"stealth_level": "paranoid", "host_gap_ms": 4000, "jitter_ms": 0, "source_ports": "40000-40001"},
    CUSTOM | {"host_gap_ms": 1, "jitter_ms": 3_600_000, "source_ports": "1024-61439"},
    CUSTOM | {"host_gap_ms": 3500},
    STEALTH | {"stealth_level": None, "host_gap_ms": None, "jitter_ms": None, "source_ports": None},
])
def test_a_good_one_is_taken_and_documented(body: dict[str, Any]) -> None:
    req = validate.start_request(body)
    assert req.options() == {k: v for k, v in body.items() if k not in ("target", "profile") and v is not None}
    assert START_SCHEMA.is_valid(body)


def test_the_refusals_say_what_would_do() -> None:
    def detail(body: dict[str, Any]) -> str:
        with pytest.raises(Problem) as caught:
            validate.start_request(body)
        return caught.value.detail

    assert detail(CUSTOM | {"jitter_ms": 10}) == ("jitter_ms needs per-host pacing: give host_gap_ms too, or use "
                                                  "profile stealth")
    assert detail({"target": T, "stealth_level": "quiet"}) == ("stealth_level can only be given with profile "
                                                               "stealth; profile normal sets it itself")
    assert detail(STEALTH | {"stealth_level": "loud"}).endswith("'loud'; one of quiet, sneaky, paranoid")
    assert detail(STEALTH | {"source_ports": "10-20"}) == ("source_ports: not a range 'lo-hi' of two ports or more "
                                                           "within 1024-61439: '10-20'")


@pytest.mark.parametrize(("body", "field"), [
    ({"source_ports": "1-2", "profile": "stealth", "jitter_ms": -1, "target": T}, "jitter_ms"),
    ({"source_ports": "1-2", "profile": "stealth", "host_gap_ms": 10, "target": T}, "source_ports"),
    ({"source_ports": "1-2", "timeout_ms": 0, "profile": "stealth", "target": T}, "timeout_ms"),
    ({"jitter_ms": 5, "profile": "custom", "ports": ["9-1"], "target": T}, "ports"),
    ({"jitter_ms": 5, "profile": "custom", "ports": [22], "enable_profiling": False, "enable_cve_match": True,
      "target": T}, "enable_cve_match"),
])
def test_a_pacing_field_is_checked_in_its_documented_place(body: dict[str, Any], field: str) -> None:
    for order in (body, dict(reversed(body.items()))):
        with pytest.raises(Problem) as caught:
            validate.start_request(order)
        assert caught.value.field == field, order


def test_netscanctl_start_sends_the_pacing_options(module_api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--socket", str(module_api.socket_path), "--json", "start", T, "--profile", "stealth",
            "--stealth-level", "sneaky", "--host-gap-ms", "20000", "--jitter-ms", "0", "--source-ports", "40000-40999"]
    assert ctl.main(argv) == 0
    out = capsys.readouterr().out  # the API's log lines too, as it runs in this process
    scan_id = orjson.loads(out[out.index("{\n"):out.index("\n}") + 2])["id"]
    assert stored(module_api, scan_id)["options"] == {"stealth_level": "sneaky", "host_gap_ms": 20000,
                                                      "jitter_ms": 0, "source_ports": "40000-40999", "remote": False}


def test_netscanctl_start_leaves_the_pacing_checks_to_the_api(module_api: Api,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--socket", str(module_api.socket_path), "start", T, "--profile", "custom", "--ports", "22",
            "--jitter-ms", "10"]
    assert ctl.main(argv) == 1
    assert "422 Invalid field: jitter_ms needs per-host pacing" in capsys.readouterr().err
