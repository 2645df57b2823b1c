"""The OpenAPI document matches the app: the same operations, valid schemas, served as is.

Every response of every test is also checked against it (conftest.conform).
"""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import orjson
import pytest
from starlette.routing import Route

from netscand.api import create_app
from netscand.api.openapi import document
from tests.api.conftest import OPENAPI, Api, conform

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
            assert secured == (path.startswith("/api/v1/scans") or path == "/metrics"), (path, method)
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
