"""/api/v1/webhooks on a real daemon's API: create (the secret shown once), read, change, delete,
the delivery log; admin scope for all of it; the allowlist's refusals; and deliveries to a real
receiver on 127.0.0.1 verified with the Standard Webhooks library."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from netscand.api.problems import INSUFFICIENT_SCOPE, INVALID_FIELD, NOT_FOUND
from netscand.config import WebhooksConfig
from netscand.scan.destinations import local_networks
from netscand.store import events
from tests.api.conftest import Api, ApiRunner, assert_problem
from tests.scan.webhook_receiver import receiving

HOOKS = "/api/v1/webhooks"
LOOPBACK = WebhooksConfig(allowed_destinations=["127.0.0.1/32"], timeout=2.0, retry_first=0.05, retry_max=0.2)
URL = "http://127.0.0.1:9/hooks"  # the discard port: nothing is sent to it here
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def hooks_api(api_factory: ApiRunner) -> Api:
    return api_factory(webhooks=LOOPBACK)


def publish(api: Api, type_: str, data: dict[str, Any]) -> None:
    """An event of scan s1, written as the inventory writes its changes: inserted, then announced."""
    api.store.call("insert event", events.insert, type_, data, scan_id="s1")
    api.on_loop(api.orchestrator.events.wake)


def create(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post(HOOKS, json={"url": URL, "events": ["change.*", "scan.state"]} | body)


def test_create_read_change_delete(hooks_api: Api) -> None:
    unix = hooks_api.unix()
    made = create(unix)
    assert made.status_code == 201, made.text
    hook = made.json()
    assert made.headers["location"] == f"{HOOKS}/{hook['id']}"
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 40 and hook["enabled"] is True
    shown = unix.get(made.headers["location"]).json()
    assert "secret" not in shown and shown == {k: v for k, v in hook.items() if k != "secret"}
    assert unix.get(HOOKS).json()["webhooks"] == [shown] and unix.get(HOOKS).json()["total"] == 1
    changed = unix.patch(made.headers["location"], json={"events": ["*"], "enabled": False})
    assert changed.status_code == 200 and changed.json()["events"] == ["*"] and changed.json()["enabled"] is False
    assert unix.delete(made.headers["location"]).status_code == 204
    assert_problem(unix.get(made.headers["location"]), 404, NOT_FOUND)
    assert_problem(unix.delete(made.headers["location"]), 404, NOT_FOUND)
    assert_problem(unix.patch(made.headers["location"], json={"enabled": True}), 404, NOT_FOUND)
    assert_problem(unix.get(f"{made.headers['location']}/deliveries"), 404, NOT_FOUND)


def test_a_given_secret_is_kept(hooks_api: Api) -> None:
    made = create(hooks_api.unix(), secret=SECRET)
    assert made.status_code == 201 and made.json()["secret"] == SECRET


def test_every_method_needs_admin(hooks_api: Api) -> None:
    hook = create(hooks_api.unix()).json()
    for scope in ("read", "scan"):
        client = hooks_api.tcp(hooks_api.token(scope))
        for response in (client.get(HOOKS), create(client), client.get(f"{HOOKS}/{hook['id']}"),
                         client.patch(f"{HOOKS}/{hook['id']}", json={"enabled": False}),
                         client.delete(f"{HOOKS}/{hook['id']}"), client.get(f"{HOOKS}/{hook['id']}/deliveries")):
            assert_problem(response, 403, INSUFFICIENT_SCOPE)
    admin = hooks_api.tcp(hooks_api.token("admin"))
    assert admin.get(HOOKS).json()["total"] == 1 and create(admin).status_code == 201


def test_with_an_empty_allowlist_no_webhook_is_made(api: Api) -> None:
    body = assert_problem(create(api.unix()), 403, INVALID_FIELD, "url")
    assert "allowed_destinations is empty" in body["detail"] and "[webhooks]" in body["detail"]


@pytest.mark.parametrize("url, said", [
    ("http://198.18.0.20:8080/", "198.18.0.20 is outside webhooks.allowed_destinations (127.0.0.1/32)"),
    ("https://[::1]/", "::1 is outside"),
])
def test_an_address_outside_the_allowlist_is_refused(hooks_api: Api, url: str, said: str) -> None:
    body = assert_problem(create(hooks_api.unix(), url=url), 403, INVALID_FIELD, "url")
    assert said in body["detail"] and "add a block holding it" in body["detail"]




@pytest.mark.parametrize("url, kind", [
    ("http://127.0.0.1:8080/", "loopback"), ("http://127.0.0.5:8080/", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::ffff:127.0.0.1]/", "loopback"), ("http://[64:ff9b::7f00:1]/", "loopback"), ("http://[::1]/", "loopback"),
])
def test_the_whole_internet_allowed_opens_no_special_address(api_factory: ApiRunner, url: str, kind: str) -> None:
    anywhere = api_factory(webhooks=WebhooksConfig(allowed_destinations=["0.0.0.0/0", "::/0"]))
    body = assert_problem(create(anywhere.unix(), url=url), 403, INVALID_FIELD, "url")
    assert f"it is {kind}, which only a block inside" in body["detail"]


LOOPBACK_RANGE = ipaddress.IPv4Network("127.0.0.0/8")


def test_the_whole_internet_allowed_opens_no_address_of_this_host(api_factory: ApiRunner) -> None:
    # This host's own LAN address (checked at creation, never connected to), as a token holder
    # would name it to reach a service bound on the host.
    own = next((net.network_address for net in local_networks()
                if net.version == 4 and net.prefixlen == 32 and not net.subnet_of(LOOPBACK_RANGE)), None)
    if own is None:
        pytest.fail("this test needs a host with an IPv4 address beside loopback", pytrace=False)
    anywhere = api_factory(webhooks=WebhooksConfig(allowed_destinations=["0.0.0.0/0", "::/0"]))
    body = assert_problem(create(anywhere.unix(), url=f"http://{own}:6379/"), 403, INVALID_FIELD, "url")
    assert f"it is an address of this host, which only a block inside {own}/32 opens" in body["detail"]


def test_a_name_resolving_outside_the_allowlist_is_refused(api_factory: ApiRunner) -> None:
    lab_only = api_factory(webhooks=WebhooksConfig(allowed_destinations=["198.18.0.0/15"]))
    body = assert_problem(create(lab_only.unix(), url="http://localhost:8080/"), 403, INVALID_FIELD, "url")
    assert "localhost resolves to 127.0.0.1, which is outside" in body["detail"]
    made = create(lab_only.unix(), url="http://198.18.0.20:8080/").json()
    # A change of URL is checked as a creation is.
    changed = lab_only.unix().patch(f"{HOOKS}/{made['id']}", json={"url": "http://localhost/"})
    assert_problem(changed, 403, INVALID_FIELD, "url")


@pytest.mark.parametrize("body, field", [
    ({"url": "ftp://127.0.0.1/"}, "url"),
    ({"url": "http://exa%20mple/"}, "url"),
    ({"events": []}, "events"),
    ({"events": ["changes"]}, "events"),
    ({"events": ["nmap.*"]}, "events"),
    ({"secret": "whsec_short"}, "secret"),
    ({"secret": "whsec_" + "A" * 31 + "!"}, "secret"),
    ({"colour": "red"}, "colour"),
])
def test_a_bad_body_names_its_field(hooks_api: Api, body: dict[str, Any], field: str) -> None:
    assert_problem(create(hooks_api.unix(), **body), 422, INVALID_FIELD, field)


def test_missing_fields_and_bad_queries(hooks_api: Api) -> None:
    unix = hooks_api.unix()
    assert_problem(unix.post(HOOKS, json={"events": ["*"]}), 422, INVALID_FIELD, "url")
    assert_problem(unix.post(HOOKS, json={"url": URL}), 422, INVALID_FIELD, "events")
    assert_problem(unix.get(HOOKS, params={"per_page": 0}), 422, INVALID_FIELD, "per_page")
    hook = create(unix).json()
    assert_problem(unix.get(f"{HOOKS}/{hook['id']}/deliveries", params={"status": "lost"}), 422, INVALID_FIELD,
                   "status")
    assert_problem(unix.patch(f"{HOOKS}/{hook['id']}", json={"enabled": "yes"}), 422, INVALID_FIELD, "enabled")


def test_events_reach_a_real_receiver_signed_once_each_and_the_log_says_so(hooks_api: Api) -> None:
    unix = hooks_api.unix()
    with receiving(failures=2) as receiver:
        hook = create(unix, url=receiver.url).json()
        sender = hooks_api.on_loop(lambda: asyncio.get_running_loop().create_task(
            hooks_api.orchestrator.webhooks.send_forever()))
        try:
            for port in (22, 80, 443):
                publish(hooks_api, "change.port_opened", {"ip": "198.18.0.5", "port": port})
            publish(hooks_api, "host.up", {"scan_id": "s1", "ip": "198.18.0.5"})
            receiver.wait_for(lambda r: len(r.accepted()) == 3)
            payloads = [Webhook(hook["secret"]).verify(r.body, r.headers) for r in receiver.accepted()]
            assert sorted(p["data"]["port"] for p in payloads) == [22, 80, 443]
            assert len({r.headers["webhook-id"] for r in receiver.accepted()}) == 3
            # Each is recorded once its answer is in, not necessarily by the time the receiver kept it.
            receiver.wait_for(lambda r: {d["status"] for d in unix.get(f"{HOOKS}/{hook['id']}/deliveries").json()
                                         ["deliveries"]} == {"delivered"})
            log = unix.get(f"{HOOKS}/{hook['id']}/deliveries").json()
            assert log["total"] == 3 and {d["status"] for d in log["deliveries"]} == {"delivered"}
            assert [d["event_seq"] for d in log["deliveries"]] == sorted((d["event_seq"] for d in log["deliveries"]),
                                                                         reverse=True)
            assert {d["id"] for d in log["deliveries"]} == {r.headers["webhook-id"] for r in receiver.accepted()}
            assert sum(d["attempts"] for d in log["deliveries"]) == 5
            page = unix.get(f"{HOOKS}/{hook['id']}/deliveries", params={"per_page": 2, "page": 2}).json()
            assert page["total"] == 3 and len(page["deliveries"]) == 1
            assert unix.get(f"{HOOKS}/{hook['id']}/deliveries", params={"status": "failed"}).json()["total"] == 0
        finally:
            hooks_api.on_loop(sender.cancel)


def test_a_pending_delivery_shows_when_it_is_tried_next(hooks_api: Api) -> None:
    unix = hooks_api.unix()
    with receiving(failures=1000) as receiver:
        hook = create(unix, url=receiver.url).json()
        publish(hooks_api, "scan.state", {"id": "s1", "status": "running"})
        sender = hooks_api.on_loop(lambda: asyncio.get_running_loop().create_task(
            hooks_api.orchestrator.webhooks.send_forever()))
        try:
            receiver.wait_for(lambda r: len(r.received) >= 2)
            (delivery,) = unix.get(f"{HOOKS}/{hook['id']}/deliveries").json()["deliveries"]
            assert delivery["status"] == "pending" and delivery["last_status_code"] == 500
            assert delivery["next_attempt_at"] is not None and delivery["last_error"] == "the receiver answered 500"
        finally:
            hooks_api.on_loop(sender.cancel)
