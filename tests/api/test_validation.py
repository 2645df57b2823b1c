"""Input rules of the start body, the list query and the Idempotency-Key: 400, 413, 415, 422."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.datastructures import QueryParams

from netscand.api import validate
from netscand.api.body import MAX_BODY
from netscand.api.models import StartRequest
from netscand.api.problems import Problem
from netscand.scan.profiles import PROFILES, ScanRequest
from tests.api.conftest import Api, assert_problem, new_site, schema_validator, start

INVALID = "urn:netscand:problem:invalid-field"
START_SCHEMA = schema_validator({"$ref": "#/components/schemas/StartRequest"})
T = "198.18.0.1"
START_FIELDS = StartRequest.__struct_fields__


@pytest.fixture(scope="module")
def unix(module_api: Api) -> httpx.Client:
    """These tests only look at answers, so they share one server (and its store)."""
    return module_api.unix()

# (body, the field the 422 must name, whether the documented schema refuses it too)
BAD_BODIES: list[tuple[Any, str, bool]] = [
    ([T], "body", True),
    ("198.18.0.1", "body", True),
    (42, "body", True),
    (None, "body", True),
    ({}, "target", True),
    ({"target": None}, "target", True),
    ({"profile": "quick"}, "target", True),
    ({"target": ""}, "target", True),
    ({"target": "   "}, "target", True),
    ({"target": []}, "target", True),
    ({"target": [T, ""]}, "target", True),
    ({"target": [T, 7]}, "target", True),
    ({"target": 3322543617}, "target", True),
    ({"target": {"ip": T}}, "target", True),
    ({"target": "198.18.0.300"}, "target", False),  # the orchestrator's target parser
    ({"target": "2001:db8::1"}, "target", False),  # IPv6: a clear 422 until supported
    ({"target": "198.18.0.0/15"}, "target", False),  # larger than the configured maximum
    ({"target": T, "profile": "fast"}, "profile", True),
    ({"target": T, "profile": "Quick"}, "profile", True),
    ({"target": T, "profile": 1}, "profile", True),
    ({"target": T, "site_id": "optional-site-uuid"}, "site_id", True),
    ({"target": T, "site_id": "123e4567e89b12d3a456426614174000"}, "site_id", True),
    ({"target": T, "site_id": "{123e4567-e89b-12d3-a456-426614174000}"}, "site_id", True),
    ({"target": T, "site_id": 5}, "site_id", True),
    ({"target": T, "profile": "custom"}, "ports", True),
    ({"target": T, "profile": "custom", "ports": []}, "ports", True),
    ({"target": T, "profile": "custom", "ports": "22,80"}, "ports", True),
    ({"target": T, "profile": "custom", "ports": [0]}, "ports", True),
    ({"target": T, "profile": "custom", "ports": [65536]}, "ports", True),
    ({"target": T, "profile": "custom", "ports": [-1]}, "ports", True),
    ({"target": T, "profile": "custom", "ports": [True]}, "ports", True),
    ({"target": T, "profile": "custom", "ports": [22.0]}, "ports", False),  # an integer to JSON Schema
    ({"target": T, "profile": "custom", "ports": ["80-22"]}, "ports", False),
    ({"target": T, "profile": "custom", "ports": ["1-70000"]}, "ports", False),
    ({"target": T, "profile": "custom", "ports": ["ssh"]}, "ports", True),
    ({"target": T, "profile": "custom", "ports": [[22]]}, "ports", True),
    ({"target": T, "ports": [22]}, "ports", True),
    ({"target": T, "profile": "deep", "ports": [22]}, "ports", True),
    ({"target": T, "profile": "quick", "enable_profiling": True}, "enable_profiling", True),
    ({"target": T, "enable_cve_match": False}, "enable_cve_match", True),
    ({"target": T, "timeout_ms": 0}, "timeout_ms", True),
    ({"target": T, "timeout_ms": 600001}, "timeout_ms", True),
    ({"target": T, "timeout_ms": 5000.0}, "timeout_ms", False),  # JSON Schema counts 5000.0 as an integer
    ({"target": T, "timeout_ms": 5000.5}, "timeout_ms", True),
    ({"target": T, "timeout_ms": "5000"}, "timeout_ms", True),
    ({"target": T, "timeout_ms": True}, "timeout_ms", True),
    ({"target": T, "max_concurrent": 0}, "max_concurrent", True),
    ({"target": T, "max_concurrent": 65537}, "max_concurrent", True),
    ({"target": T, "max_concurrent": False}, "max_concurrent", True),
    ({"target": T, "profile": "custom", "ports": [22], "enable_profiling": 1}, "enable_profiling", True),
    ({"target": T, "profile": "custom", "ports": [22], "enable_profiling": "true"}, "enable_profiling", True),
    ({"target": T, "profile": "custom", "ports": [22], "enable_cve_match": 0}, "enable_cve_match", True),
    # CVE matching reads the CPEs service detection finds: it can't go without profiling.
    ({"target": T, "profile": "custom", "ports": [22], "enable_profiling": False, "enable_cve_match": True},
     "enable_cve_match", False),
    ({"target": T, "rate": 0}, "rate", True),
    ({"target": T, "rate": -5}, "rate", True),
    ({"target": T, "rate": 0.5}, "rate", True),
    ({"target": T, "rate": 5e-324}, "rate", True),
    ({"target": T, "rate": "100"}, "rate", True),
    ({"target": T, "rate": True}, "rate", True),
    ({"target": T, "retries": -1}, "retries", True),
    ({"target": T, "retries": 11}, "retries", True),
    ({"target": T, "retries": True}, "retries", True),
    ({"target": T, "retries": 1.5}, "retries", True),
    ({"target": T, "scan_name": "x"}, "scan_name", True),
    ({"target": T, "Profile": "quick"}, "Profile", True),
]


@pytest.mark.parametrize(("body", "field", "schema_refuses"), BAD_BODIES,
                         ids=[f"{i}-{f}" for i, (_, f, _) in enumerate(BAD_BODIES)])
def test_422_names_the_field(unix: httpx.Client, body: Any, field: str, schema_refuses: bool) -> None:
    r = unix.post("/api/v1/scans/start", content=orjson.dumps(body), headers={"Content-Type": "application/json"})
    problem = assert_problem(r, 422, field_=field)
    assert problem["type"] in (INVALID, "urn:netscand:problem:unprocessable")
    # The documented request schema agrees wherever JSON Schema can say it.
    assert START_SCHEMA.is_valid(body) is not schema_refuses


def test_a_422_says_the_rule_and_what_would_do(unix: httpx.Client) -> None:
    def detail(body: dict[str, Any]) -> str:
        r = unix.post("/api/v1/scans/start", content=orjson.dumps(body), headers={"Content-Type": "application/json"})
        return str(assert_problem(r, 422, INVALID)["detail"])

    assert detail({"target": T, "profile": "fast"}).endswith(f"'fast'; one of {', '.join(PROFILES)}")
    assert "for example \"123e4567-e89b-12d3-a456-426614174000\"" in detail({"target": T, "site_id": "x"})
    assert detail({"target": [T, ""]}).startswith("target[1]: ")
    assert detail({"target": T, "timeout_ms": 0}) == "timeout_ms: Expected an integer >= 1"
    # Types in JSON's words, as the client wrote them, not Python's.
    assert detail({"target": T, "timeout_ms": "5"}) == "timeout_ms: Expected an integer or null, got a string"
    assert detail({"target": T, "rate": True}).startswith("rate: Expected a number or null, got a boolean")
    assert detail({"target": {}}).startswith("target: Expected a string or an array, got an object")
    assert detail({"target": T, "scan_name": 1}) == f"unknown field 'scan_name'; known: {', '.join(START_FIELDS)}"
    assert detail({"target": T, "ports": [22]}).startswith("ports can only be given with profile custom")
    # A refused value is quoted in part: the answer doesn't grow with what the client sent.
    long = detail({"target": T, "profile": "x" * 500_000})
    assert len(long) < 400 and long.endswith(f"...; one of {', '.join(PROFILES)}")


# The field a 422 names whatever the order of the keys: an unknown one first (the first by
# name), then a missing or null target, then the first at fault in documented order.
ORDERED: list[tuple[dict[str, Any], str]] = [
    ({"profile": "x"}, "target"),
    ({"timeout_ms": "x", "target": None}, "target"),
    ({"zz": 1, "aa": 1}, "aa"),
    ({"timeout_ms": "x", "zz": 1}, "zz"),
    ({"profile": "x", "target": T, "Profile": "quick"}, "Profile"),
    ({"timeout_ms": "x", "target": T, "profile": "fast"}, "profile"),
    ({"retries": -1, "rate": 0, "target": T}, "rate"),
    ({"max_concurrent": 0, "site_id": "x", "target": [T, 7]}, "target"),
    ({"timeout_ms": 0, "profile": "custom", "ports": ["80-22"], "target": T}, "ports"),
    ({"timeout_ms": 0, "profile": "custom", "ports": [22, "80-22"], "target": T}, "ports"),
    ({"site_id": "x", "profile": "custom", "ports": ["80-22"], "target": T}, "site_id"),
    ({"enable_profiling": True, "ports": ["80-22"], "target": T}, "ports"),
]


@pytest.mark.parametrize(("body", "field"), ORDERED)
def test_a_422_names_the_first_field_in_documented_order(body: dict[str, Any], field: str) -> None:
    for order in (body, dict(reversed(body.items()))):
        with pytest.raises(Problem) as caught:
            validate.start_request(order)
        assert caught.value.field == field, order


@pytest.mark.parametrize("ports", [["- "], ["-\t"], [" 22 - 80 "], ["-", 22]])
def test_port_ranges_read_as_port_ranges_reads_them(ports: list[Any]) -> None:
    body = {"target": T, "profile": "custom", "ports": ports}
    assert validate.start_request(body).ports == ports
    assert START_SCHEMA.is_valid(body)


def test_a_start_request_becomes_a_scan_request_field_for_field() -> None:
    assert StartRequest.__struct_fields__ == tuple(f.name for f in dataclasses.fields(ScanRequest))


GOOD_BODIES: list[dict[str, Any]] = [
    {"target": T},
    {"target": [T, "198.18.0.2-198.18.0.4", "198.18.1.0/30"], "profile": "stealth"},
    {"target": T, "profile": "deep", "rate": 1, "retries": 0},
    {"target": T, "profile": "custom", "ports": [22, "8000-8010", "443"], "enable_profiling": None},
    {"target": T, "site_id": "123E4567-E89B-12D3-A456-426614174000", "timeout_ms": None},
]


@pytest.mark.parametrize("body", GOOD_BODIES)
def test_valid_bodies_are_accepted_and_documented(unix: httpx.Client, body: dict[str, Any]) -> None:
    if "site_id" in body:  # a scan may name only a site that exists: this one, in upper case
        body = {**body, "site_id": new_site(unix).upper()}
    assert start(unix, body).status_code == 202
    assert START_SCHEMA.is_valid(body)


@pytest.mark.parametrize("raw", [b"{", b"", b"{'target': '198.18.0.1'}", b'{"target": "198.18.0.1",}',
                                 b"\xff\xfe{}", b'{"target": NaN}', b"[1] [2]"])
def test_malformed_json_is_400(unix: httpx.Client, raw: bytes) -> None:
    r = unix.post("/api/v1/scans/start", content=raw, headers={"Content-Type": "application/json"})
    assert_problem(r, 400, "urn:netscand:problem:malformed-json")


def test_body_without_content_type_is_json(unix: httpx.Client) -> None:
    r = unix.post("/api/v1/scans/start", content=orjson.dumps({"target": T}))
    assert "content-type" not in r.request.headers
    assert r.status_code == 202


@pytest.mark.parametrize("media", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_other_media_types_are_415(unix: httpx.Client, media: str) -> None:
    r = unix.post("/api/v1/scans/start", content=orjson.dumps({"target": T}), headers={"Content-Type": media})
    assert_problem(r, 415, "urn:netscand:problem:unsupported-media-type")


def test_json_media_type_with_charset_is_fine(unix: httpx.Client) -> None:
    r = unix.post("/api/v1/scans/start", content=orjson.dumps({"target": T}),
                  headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 202


def _padded(size: int) -> bytes:
    """A valid start body of exactly `size` bytes (JSON allows any amount of whitespace)."""
    body = orjson.dumps({"target": T, "profile": "quick"})
    return body[:-1] + b" " * (size - len(body)) + b"}"


def test_exactly_1_mib_is_accepted(unix: httpx.Client) -> None:
    r = unix.post("/api/v1/scans/start", content=_padded(MAX_BODY), headers={"Content-Type": "application/json"})
    assert r.status_code == 202


def test_1_mib_and_1_byte_is_413(unix: httpx.Client) -> None:
    r = unix.post("/api/v1/scans/start", content=_padded(MAX_BODY + 1), headers={"Content-Type": "application/json"})
    assert int(r.request.headers["content-length"]) == MAX_BODY + 1
    assert_problem(r, 413, "urn:netscand:problem:body-too-large")


def test_chunked_body_over_1_mib_is_413(unix: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        data = _padded(MAX_BODY + 1)
        for i in range(0, len(data), 64 * 1024):
            yield data[i:i + 64 * 1024]

    r = unix.post("/api/v1/scans/start", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert_problem(r, 413, "urn:netscand:problem:body-too-large")
    # The connection and the server are fine afterwards.
    assert unix.get("/healthz").status_code == 200


def test_chunked_body_under_the_limit_is_read(unix: httpx.Client) -> None:
    r = unix.post("/api/v1/scans/start", content=iter([b'{"target": ', b'"198.18.0.1"}']),
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 202


@pytest.mark.parametrize("key", ["", "x" * 256, "two words", "ключ"])
def test_bad_idempotency_key_is_422(unix: httpx.Client, key: str) -> None:
    r = unix.post("/api/v1/scans/start", json={"target": T},
                  headers=[(b"Idempotency-Key", key.encode())])  # bytes: httpx refuses non-ASCII text
    assert_problem(r, 422, INVALID, "Idempotency-Key")


def test_longest_idempotency_key_is_fine(unix: httpx.Client) -> None:
    assert start(unix, key="k" * 255).status_code == 202


@pytest.mark.parametrize("key", ["abc\n", "abc\r\n", "\n"])
def test_a_trailing_newline_is_not_a_visible_character(key: str) -> None:
    # msgspec searches a pattern, and `$` also matches before a final newline.
    with pytest.raises(Problem) as caught:
        validate.idempotency_key(key)
    assert caught.value.field == "Idempotency-Key"
    assert validate.idempotency_key("abc") == "abc"


@pytest.mark.parametrize(("query", "field"), [
    ("per_page=0", "per_page"), ("per_page=101", "per_page"), ("per_page=-1", "per_page"),
    ("per_page=abc", "per_page"), ("per_page=", "per_page"), ("per_page=2.5", "per_page"),
    ("per_page=%2B5", "per_page"), ("page=0", "page"), ("page=-1", "page"), ("page=x", "page"),
    ("page=99999999999999999999", "page"), ("status=done", "status"), ("status=", "status"),
    ("status=Completed", "status"), ("site_id=abc", "site_id"), ("site_id=", "site_id"),
    ("sort=created_at", "sort"), ("page=1&page=2", "page"), ("per-page=5", "per-page"),
    ("page=" + "1" * 5000, "page"), ("per_page=" + "0" * 5000 + "1000", "per_page"),
])
def test_bad_list_query_is_422(unix: httpx.Client, query: str, field: str) -> None:
    assert_problem(unix.get(f"/api/v1/scans?{query}"), 422, INVALID, field)


@pytest.mark.parametrize(("query", "field"), [
    ("zz=1&page=x", "zz"), ("page=x&sort=1", "sort"), ("per_page=x&page=0", "page"),
    ("status=x&per_page=0", "per_page"), ("site_id=x&status=x", "status"), ("page=1&zz=1&page=2", "zz"),
    ("page=1&page=2&zz=1", "page"),
])
def test_a_bad_query_names_the_first_parameter_at_fault(query: str, field: str) -> None:
    # Unknown or repeated first, in the client's order; then the first bad one in documented order.
    with pytest.raises(Problem) as caught:
        validate.list_query(QueryParams(query))
    assert caught.value.field == field


def test_list_bounds_are_inclusive(unix: httpx.Client) -> None:
    for query in ("per_page=1", "per_page=100", "page=1", "page=2147483647", "page=" + "0" * 5000 + "2"):
        r = unix.get(f"/api/v1/scans?{query}")
        assert r.status_code == 200, (query, r.text)
    assert unix.get("/api/v1/scans?page=2147483648").status_code == 422
