"""Who may see what (issue 9): a scan belongs to its creator; a `scan` token reaches only its
own scans (another's answers as if it did not exist), `read` and `admin` tokens and the Unix
socket see every scan; Idempotency-Keys are per owner and a replay must repeat its request;
socket-only targets are refused over HTTPS; an owner's queue is bounded."""

from __future__ import annotations

import os
import uuid

import httpx

from netscand.config import PolicyConfig
from netscand.control import _PeerProtocol
from netscand.scan.admission import QUEUE_RETRY_AFTER_S
from tests.api.conftest import MAX_TARGET_ADDRESSES, Api, ApiRunner, assert_problem, new_site, start, stored

NOT_FOUND = "urn:netscand:problem:not-found"
QUEUE_FULL = "urn:netscand:problem:queue-full"


def scan_paths(scan_id: str) -> list[tuple[str, str]]:
    return [("GET", f"/api/v1/scans/{scan_id}"), ("GET", f"/api/v1/scans/{scan_id}/result"),
            ("POST", f"/api/v1/scans/{scan_id}/stop"), ("DELETE", f"/api/v1/scans/{scan_id}")]


def ids(client: httpx.Client) -> set[str]:
    body = client.get("/api/v1/scans", params={"per_page": 100}).json()
    assert body["total"] == len(body["scans"])
    return {s["id"] for s in body["scans"]}


def test_a_scan_token_reaches_only_its_own_scans(api: Api) -> None:
    alice, bob = api.tcp(api.token("scan", "alice")), api.tcp(api.token("scan", "bob"))
    theirs = start(alice).json()["id"]
    mine = start(bob).json()["id"]
    local = start(api.unix()).json()["id"]
    missing = str(uuid.uuid4())
    for method, path in scan_paths(theirs):
        # The same answer as for a scan that never existed, but for the id it names.
        hidden = assert_problem(bob.request(method, path), 404, NOT_FOUND)
        unknown = assert_problem(bob.request(method, path.replace(theirs, missing)), 404, NOT_FOUND)
        assert hidden == {**unknown, "detail": unknown["detail"].replace(missing, theirs)}
    assert ids(bob) == {mine} and ids(alice) == {theirs}
    assert stored(api, theirs)["status"] == "queued"  # bob's stop and delete changed nothing
    assert bob.get(f"/api/v1/scans/{mine}").status_code == 200
    assert bob.post(f"/api/v1/scans/{mine}/stop").json()["status"] == "cancelled"
    assert bob.delete(f"/api/v1/scans/{mine}").status_code == 204
    assert local not in ids(alice) | ids(bob)


def test_read_tokens_see_every_scan_and_change_none(api: Api) -> None:
    alice = api.tcp(api.token("scan", "alice"))
    viewer = api.tcp(api.token("read", "dashboard"))
    theirs = start(alice).json()["id"]
    local = start(api.unix()).json()["id"]
    assert ids(viewer) == {theirs, local}
    assert viewer.get(f"/api/v1/scans/{theirs}").json()["id"] == theirs
    assert viewer.get(f"/api/v1/scans/{theirs}/result").json()["id"] == theirs
    assert_problem(viewer.post(f"/api/v1/scans/{theirs}/stop"), 403, "urn:netscand:problem:insufficient-scope")
    assert_problem(viewer.delete(f"/api/v1/scans/{theirs}"), 403, "urn:netscand:problem:insufficient-scope")


def test_admin_tokens_and_the_unix_socket_reach_every_scan(api: Api) -> None:
    alice = api.tcp(api.token("scan", "alice"))
    admin = api.tcp(api.token("admin", "root"))
    first, second = start(alice).json()["id"], start(alice).json()["id"]
    assert ids(admin) == ids(api.unix()) == {first, second}
    for client, scan_id in ((admin, first), (api.unix(), second)):
        assert client.get(f"/api/v1/scans/{scan_id}/result").status_code == 200
        assert client.post(f"/api/v1/scans/{scan_id}/stop").json()["status"] == "cancelled"
        assert client.delete(f"/api/v1/scans/{scan_id}").status_code == 204
    assert ids(alice) == set()


def test_unix_socket_clients_own_scans_as_their_uid(api_factory: ApiRunner) -> None:
    # The control process's own protocol, which reads the client's uid with SO_PEERCRED.
    api = api_factory(unix_protocol=_PeerProtocol)
    scan_id = start(api.unix(), key="k").json()["id"]
    assert stored(api, scan_id)["owner"] == f"unix:{os.getuid()}"
    assert start(api.unix(), key="k").json()["id"] == scan_id  # its keys are its own


def test_a_replay_must_repeat_the_request(api: Api) -> None:
    unix = api.unix()
    site = new_site(unix)
    body = {"target": "198.18.0.1", "profile": "quick", "site_id": site}
    first = start(unix, body, key="once")
    # The same request as the API reads it: a site_id's case and a null field do not count.
    same = start(unix, {**body, "site_id": site.upper(), "rate": None}, key="once")
    assert same.status_code == 202 and same.json()["id"] == first.json()["id"]
    assert same.headers["idempotent-replayed"] == "true"
    for changed in ({**body, "target": "198.18.0.2"}, {**body, "profile": "normal"}, {**body, "rate": 10}):
        problem = assert_problem(start(unix, changed, key="once"), 422, "urn:netscand:problem:invalid-field",
                                 "Idempotency-Key")
        assert "reused with a different request" in problem["detail"] and first.json()["id"] in problem["detail"]
    # Another owner's key of the same name is another key.
    other = start(api.tcp(api.token("scan")), {**body, "target": "198.18.0.2"}, key="once")
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    assert len(ids(unix)) == 2


def test_a_scan_stored_without_a_digest_replays_on_its_key_alone(api: Api) -> None:
    # Scans started before digests were kept (schema version 1) have none.
    first = start(api.unix(), key="old").json()["id"]
    api.store.update_scan(first, request_digest=None)
    again = start(api.unix(), {"target": "198.18.0.9"}, key="old")
    assert again.status_code == 202 and again.json()["id"] == first


def test_socket_only_targets_are_refused_over_https(api: Api) -> None:
    admin = api.tcp(api.token("admin"))
    for target, block in (("127.0.0.1", "127.0.0.0/8"), (["198.18.0.1", "169.254.169.254"], "169.254.0.0/16"),
                          ("127.0.0.0/30", "127.0.0.0/8")):
        problem = assert_problem(start(admin, {"target": target, "profile": "quick"}), 403, field_="target")
        assert problem["detail"].startswith(f"{block} may only be scanned by clients of the daemon's Unix socket")
        assert start(api.unix(), {"target": target, "profile": "quick"}).status_code == 202
    assert start(admin, {"target": "198.18.0.1", "profile": "quick"}).status_code == 202


def test_an_admin_may_open_socket_only_blocks_to_https(api_factory: ApiRunner) -> None:
    api = api_factory(policy=PolicyConfig(max_target_addresses=MAX_TARGET_ADDRESSES,
                                          socket_only_targets=["169.254.0.0/16"]))
    admin = api.tcp(api.token("admin"))
    assert start(admin, {"target": "127.0.0.1", "profile": "quick"}).status_code == 202
    assert_problem(start(admin, {"target": "169.254.1.1", "profile": "quick"}), 403, field_="target")


def test_an_owner_may_queue_only_so_many_scans(api_factory: ApiRunner) -> None:
    api = api_factory(max_queued_per_owner=3)
    alice, bob = api.tcp(api.token("scan", "alice")), api.tcp(api.token("scan", "bob"))
    queued = [start(alice, key=f"k{i}").json()["id"] for i in range(3)]
    r = start(alice)
    problem = assert_problem(r, 429, QUEUE_FULL)
    assert r.headers["retry-after"] == str(QUEUE_RETRY_AFTER_S)
    assert "3 scans queued" in problem["detail"]
    assert start(alice, key="k0").json()["id"] == queued[0]  # a replay queues nothing new
    assert start(bob).status_code == 202 and start(api.unix()).status_code == 202  # others are not held up
    alice.post(f"/api/v1/scans/{queued[0]}/stop")
    assert start(alice).status_code == 202  # its place was given back
    assert_problem(start(alice), 429, QUEUE_FULL)


def test_a_refused_start_gives_its_queue_place_back(api_factory: ApiRunner) -> None:
    api = api_factory(max_queued_per_owner=1)
    unix = api.unix()
    for _ in range(3):
        assert_problem(start(unix, {"target": "203.0.113.1"}), 403)  # outside the policy
    assert start(unix).status_code == 202
