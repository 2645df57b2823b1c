"""Who may do what: the Unix socket is trusted; TCP needs a bearer token of a sufficient scope."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.api.conftest import Api, ApiRunner, assert_problem, start

UNAUTHENTICATED = "urn:netscand:problem:unauthenticated"
INSUFFICIENT_SCOPE = "urn:netscand:problem:insufficient-scope"


def _every_guarded_request(client: httpx.Client, scan_id: str) -> list[httpx.Response]:
    return [
        start(client),
        client.get(f"/api/v1/scans/{scan_id}"),
        client.get(f"/api/v1/scans/{scan_id}/result"),
        client.post(f"/api/v1/scans/{scan_id}/stop"),
        client.get("/api/v1/scans"),
    ]


def test_tcp_without_token_is_401_everywhere(api: Api) -> None:
    scan_id = start(api.unix()).json()["id"]
    for r in _every_guarded_request(api.tcp(), scan_id):
        assert_problem(r, 401, UNAUTHENTICATED)
        assert r.headers["www-authenticate"] == 'Bearer realm="netscand"'
    assert api.unix().get(f"/api/v1/scans/{scan_id}").json()["status"] == "queued"  # the stop was refused


@pytest.mark.parametrize("header", [
    "Bearer nsd_not-a-real-token",
    "bearer nsd_still-wrong",
    "Bearer two tokens",
    "Bearer nsd_not!b64",
])
def test_tcp_with_a_wrong_token_is_401(api: Api, header: str) -> None:
    api.token("admin")  # a real token exists; these just aren't it
    r = api.tcp(Authorization=header).get("/api/v1/scans")
    assert_problem(r, 401, UNAUTHENTICATED)
    assert r.headers["www-authenticate"].startswith("Bearer ")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc", "Bearer"])
def test_other_schemes_get_a_plain_challenge(api: Api, header: str) -> None:
    r = api.tcp(Authorization=header).get("/api/v1/scans")
    assert_problem(r, 401, UNAUTHENTICATED)
    assert r.headers["www-authenticate"] == 'Bearer realm="netscand"'


def test_wrong_token_challenge_says_invalid_token(api: Api) -> None:
    r = api.tcp("nsd_wrong").get("/api/v1/scans")
    assert r.headers["www-authenticate"] == 'Bearer realm="netscand", error="invalid_token"'


def test_revoked_token_is_401(api: Api) -> None:
    token = api.token("admin", "gone")
    client = api.tcp(token)
    assert client.get("/api/v1/scans").status_code == 200
    assert api.store.revoke_token("gone")
    assert_problem(client.get("/api/v1/scans"), 401, UNAUTHENTICATED)


def test_read_token_may_get_but_not_start_or_stop(api: Api) -> None:
    scan_id = start(api.unix()).json()["id"]
    reader = api.tcp(api.token("read"))
    assert reader.get("/api/v1/scans").status_code == 200
    assert reader.get(f"/api/v1/scans/{scan_id}").status_code == 200
    assert reader.get(f"/api/v1/scans/{scan_id}/result").status_code == 200
    for r in (start(reader), reader.post(f"/api/v1/scans/{scan_id}/stop")):
        body = assert_problem(r, 403, INSUFFICIENT_SCOPE)
        assert "scan" in body["detail"] and "read-client" in body["detail"]
        assert r.headers["www-authenticate"] == \
            'Bearer realm="netscand", error="insufficient_scope", scope="scan"'
    assert reader.get(f"/api/v1/scans/{scan_id}").json()["status"] == "queued"
    assert reader.get("/api/v1/scans").json()["total"] == 1


@pytest.mark.parametrize("scope", ["scan", "admin"])
def test_scan_and_admin_tokens_may_do_everything(api: Api, scope: str) -> None:
    client = api.tcp(api.token(scope))
    scan_id = start(client).json()["id"]
    statuses = [r.status_code for r in _every_guarded_request(client, scan_id)]
    assert statuses == [202, 200, 200, 200, 200]


def test_forbidden_start_reads_no_body(api: Api) -> None:
    # Scope is checked before the body: a read token gets 403 even for a malformed body.
    r = api.tcp(api.token("read")).post("/api/v1/scans/start", content=b"{")
    assert_problem(r, 403, INSUFFICIENT_SCOPE)
    assert_problem(api.tcp().post("/api/v1/scans/start", content=b"{"), 401, UNAUTHENTICATED)


def test_unix_socket_needs_no_token_and_ignores_one(api: Api) -> None:
    scan_id = start(api.unix()).json()["id"]
    bogus = api.unix()
    bogus.headers["Authorization"] = "Bearer nsd_bogus"
    statuses = [r.status_code for r in _every_guarded_request(bogus, scan_id)]
    assert statuses == [202, 200, 200, 200, 200]


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/openapi.json"])
def test_health_and_openapi_need_no_token(api: Api, path: str) -> None:
    assert api.tcp().get(path).status_code == 200
    assert api.tcp("nsd_wrong").get(path).status_code == 200


def test_unknown_routes_are_404_without_a_token(api: Api) -> None:
    # The routes are public (the OpenAPI document lists them), so a 404 tells nothing.
    assert_problem(api.tcp().get("/api/v2/scans"), 404)


def test_an_untagged_app_trusts_nobody(api_factory: ApiRunner) -> None:
    # Served without the listener wrapper, even the Unix socket counts as TCP: fail closed.
    bare = api_factory(wrap=None)
    assert_problem(bare.unix().get("/api/v1/scans"), 401, UNAUTHENTICATED)
    assert bare.unix().get("/healthz").status_code == 200
    token = bare.token("read")
    unix = bare.unix()
    unix.headers["Authorization"] = f"Bearer {token}"
    assert unix.get("/api/v1/scans").status_code == 200


def test_token_never_lands_in_a_response(api: Api) -> None:
    token = api.token("scan")
    client = api.tcp(token)
    scan_id = start(client).json()["id"]
    for r in _every_guarded_request(client, scan_id) + [client.get(f"/api/v1/scans/{uuid.uuid4()}")]:
        assert token not in r.text
