"""The OpenAPI document matches the app and the models: the same operations, every field and
enum value of the models, closed schemas, served as is.

Every response of every test is also checked against it (conftest.conform).
"""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import msgspec
import orjson
import pytest
from starlette.routing import Route

from netscand.api import create_app, models
from netscand.api.openapi import document
from netscand.engine.shm import R_PORT, S_OPEN, Result
from netscand.profiling.services import ServiceInfo
from netscand.scan.identify import NAME_PREFERENCE
from netscand.scan.profiles import DEFAULT_PROFILE, PROFILES, STEALTH_LEVELS
from netscand.scan.result import Fingerprint, ScanResult
from netscand.statuses import STATUSES
from tests.api.conftest import OPENAPI, Api, conform, schema_validator, start

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _app_operations(api: Api) -> set[tuple[str, str]]:
    app = create_app(api.orchestrator, api.store)
    ops = set()
    for route in app.routes:
        assert isinstance(route, Route)
        # Starlette answers HEAD wherever it answers GET; the document lists what clients use.
        ops |= {(route.path, m.lower()) for m in route.methods or () if m != "HEAD"}
    return ops


def test_every_route_is_documented_and_nothing_else(api: Api) -> None:
    documented = {(path, method) for path, item in OPENAPI["paths"].items() for method in item if method in METHODS}
    assert _app_operations(api) == documented


def test_the_document_is_served_as_built(api: Api) -> None:
    r = api.tcp().get("/api/v1/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == orjson.loads(orjson.dumps(document()))
    assert r.json()["openapi"] == "3.1.0"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_schemas_are_valid_and_refs_resolve() -> None:
    for schema in OPENAPI["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    for ref in _refs(OPENAPI):
        node: Any = OPENAPI
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, ref
            node = node[part]


def test_every_operation_documents_its_errors() -> None:
    for path, item in OPENAPI["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            assert "500" in responses, (path, method)
            secured = op.get("security", OPENAPI["security"]) != []
            assert secured == (path.startswith(("/api/v1/scans", "/api/v1/cve/", "/api/v1/webhooks",
                                                "/api/v1/schedules", "/api/v1/events", "/api/v1/sites",
                                                "/api/v1/devices", "/api/v1/changes"))
                               or path == "/metrics"), (path, method)
            if secured:
                assert {"401", "403", "429", "503"} <= responses.keys(), (path, method)
            if "requestBody" in op:
                assert {"400", "413", "415", "422"} <= responses.keys(), (path, method)
            if "{scan_id}" in path:
                assert "404" in responses, (path, method)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    resolved = response
                    if "$ref" in response:
                        resolved = OPENAPI["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
                    assert list(resolved["content"]) == ["application/problem+json"], (path, method, status)


def test_security_scheme_is_bearer() -> None:
    assert OPENAPI["components"]["securitySchemes"]["bearer"] == {
        **OPENAPI["components"]["securitySchemes"]["bearer"], "type": "http", "scheme": "bearer"}
    assert OPENAPI["security"] == [{"bearer": []}]


def test_documented_profiles_and_statuses_are_the_specs() -> None:
    schemas = OPENAPI["components"]["schemas"]
    assert schemas["ScanStatus"]["properties"]["status"]["enum"] == \
        ["queued", "running", "completed", "failed", "cancelled"]
    profile = schemas["StartRequest"]["properties"]["profile"]["anyOf"][0]
    assert profile["enum"] == ["quick", "normal", "deep", "stealth", "custom"]
    assert "Idempotent-Replayed" in OPENAPI["paths"]["/api/v1/scans/start"]["post"]["description"]


def test_conformance_hook_catches_a_wrong_response(unix: httpx.Client) -> None:
    # The check every test relies on does fail for a response outside the document.
    request = unix.get("/healthz").request
    with pytest.raises(AssertionError, match="status"):
        conform(httpx.Response(200, json={"status": "fine"}, request=request))
    with pytest.raises(AssertionError, match="not documented"):
        conform(httpx.Response(201, json={"status": "ok"}, request=request))
    with pytest.raises(AssertionError):
        conform(httpx.Response(404, json={"detail": "plain JSON"}, request=request))


def _structs() -> set[type[msgspec.Struct]]:
    """Every Struct the models reach from the document's schemas."""
    found: set[type[msgspec.Struct]] = set()

    def walk(t: msgspec.inspect.Type) -> None:
        if isinstance(t, msgspec.inspect.StructType):
            if t.cls in found:
                return
            found.add(t.cls)
            for f in t.fields:
                walk(f.type)
        for attr in ("item_type", "types", "key_type", "value_type"):
            inner = getattr(t, attr, None)
            for sub in inner if isinstance(inner, tuple) else (inner,) if inner else ():
                walk(sub)

    for t in msgspec.inspect.multi_type_info(models.SCHEMAS):
        walk(t)
    return found


def test_every_field_of_the_models_is_documented_and_closed() -> None:
    schemas = OPENAPI["components"]["schemas"]
    for model in _structs():
        schema = schemas[model.__name__]
        assert list(schema["properties"]) == list(model.__struct_encode_fields__), model
        assert schema["additionalProperties"] is False, model


def test_every_schema_of_an_object_is_closed() -> None:
    def objects(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, list):
            return [o for v in node for o in objects(v)]
        if not isinstance(node, dict):
            return []
        own = [node] if node.get("type") == "object" and "properties" in node else []
        return own + [o for v in node.values() for o in objects(v)]

    found = objects(OPENAPI["components"]["schemas"])
    assert len(found) >= len(_structs())
    assert all(o.get("additionalProperties") is False for o in found)


def test_enums_are_the_registries_in_their_order() -> None:
    schemas = OPENAPI["components"]["schemas"]
    assert schemas["ScanStatus"]["properties"]["status"]["enum"] == list(STATUSES)
    assert schemas["ScanResult"]["properties"]["profile"]["enum"] == list(PROFILES)
    assert schemas["Hostname"]["properties"]["source"]["enum"] == list(NAME_PREFERENCE)
    (status,) = [p for p in OPENAPI["paths"]["/api/v1/scans"]["get"]["parameters"] if p["name"] == "status"]
    assert status["schema"]["enum"] == list(STATUSES)
    level = schemas["StartRequest"]["properties"]["stealth_level"]["anyOf"][0]
    assert level["enum"] == list(STEALTH_LEVELS) == ["quiet", "sneaky", "paranoid"]


def test_port_states_keep_their_documented_order() -> None:
    assert OPENAPI["components"]["schemas"]["Port"]["properties"]["state"]["enum"] == ["open", "closed", "filtered", "open|filtered"]


def test_in_order_takes_an_enum_of_mixed_types() -> None:
    assert models.in_order({"enum": [1, "a", None, True]}) == {"enum": [1, "a", None, True]}
    assert models.in_order({"enum": sorted(STATUSES)}) == {"enum": list(STATUSES)}


def test_the_default_profile_is_documented_as_the_default() -> None:
    profile = OPENAPI["components"]["schemas"]["StartRequest"]["properties"]["profile"]
    assert profile["default"] == DEFAULT_PROFILE
    assert profile["description"].startswith(f"Default {DEFAULT_PROFILE}.")


def _patterns(node: Any) -> list[str]:
    if isinstance(node, list):
        return [p for item in node for p in _patterns(item)]
    if not isinstance(node, dict):
        return []
    own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
    return own + [p for value in node.values() for p in _patterns(value)]


def test_no_pattern_takes_a_trailing_newline() -> None:
    # msgspec searches with Python's re, where `$` also matches before a final newline.
    patterns = _patterns(OPENAPI["components"]["schemas"])
    assert patterns and not [p for p in patterns if p.endswith("$")]
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert("key\n", models.IdempotencyKey)


def test_each_profile_is_described_as_the_registry_describes_it() -> None:
    prose = OPENAPI["components"]["schemas"]["StartRequest"]["properties"]["profile"]["description"]
    for name, profile in PROFILES.items():
        assert f"{name}: {profile.description}" in prose
    # The order claimed is the one the engine has: a steady plan's probes shuffled only inside
    # its shards, a paced host's ports in an order of their own.
    assert "shards of up to 65,536 probes" in prose and "probes are shuffled only inside a shard" in prose
    assert "in a keyed random order of that host's" in prose


def test_the_pacing_fields_say_which_profiles_take_them() -> None:
    fields = OPENAPI["components"]["schemas"]["StartRequest"]["properties"]
    assert fields["stealth_level"]["description"].startswith("Only with profile stealth: ")
    for name in ("host_gap_ms", "jitter_ms", "source_ports"):
        assert fields[name]["description"].startswith("Only with profile stealth or custom")
    assert "on custom it turns per-host pacing on" in fields["host_gap_ms"]["description"]


def test_query_parameters_are_the_query_models() -> None:
    for path, model in (("/api/v1/scans", models.ListQuery), ("/api/v1/scans/{scan_id}/result", models.ResultQuery)):
        names = [p["name"] for p in OPENAPI["paths"][path]["get"]["parameters"] if p["in"] == "query"]
        assert names == list(model.__struct_fields__)


def test_a_profiled_device_is_what_the_document_says() -> None:
    # A device with everything profiling can add: names by source, a UDP service, an OS guess.
    result = ScanResult()
    opts = bytes.fromhex("020405b40402080a000000000000000001030307")
    result.add(Result(R_PORT, S_OPEN, 64, 0, 1, 0, 0xC6120005, 22, 64240, 0, 0, b"\0" * 6, 0, opts), 0, "tcp")
    host = result.hosts[0xC6120005]
    host.names = {"dns": "printer.lab", "mdns": "printer.local"}
    host.udp[161] = ServiceInfo("snmp")
    host.services[22] = ServiceInfo("ssh", "OpenSSH", "9.2p1", "cpe:2.3:a:openbsd:openssh:9.2p1", "SSH-2.0-OpenSSH_9.2p1")
    host.tcp.open[22] = Fingerprint(64, 64240, 0, opts)
    host.timed_out = True
    device = result.device(host, profiling=True)
    assert {"hostnames", "timed_out"} <= device.keys() and {"tcp", "udp"} == {p["protocol"] for p in device["ports"]}
    schema_validator({"$ref": "#/components/schemas/Device"}).validate(device)
    assert "today" not in OPENAPI["components"]["schemas"]["Port"]["properties"]["protocol"]["description"]


def test_conformance_hook_catches_an_extra_or_a_missing_field(unix: httpx.Client) -> None:
    # Response schemas are closed: a field the code sends but no model declares fails every test
    # that sees it, and so does a declared field the code forgot.
    response = start(unix)
    body = response.json()
    with pytest.raises(AssertionError, match="Additional properties"):
        conform(httpx.Response(202, json={**body, "surprise": 1}, headers=response.headers,
                               request=response.request))
    del body["excluded_addresses"]
    with pytest.raises(AssertionError, match="required property"):
        conform(httpx.Response(202, json=body, headers=response.headers, request=response.request))
    health = unix.get("/healthz").request
    with pytest.raises(AssertionError, match="Additional properties"):
        conform(httpx.Response(200, json={"status": "ok", "uptime": 5}, request=health))
