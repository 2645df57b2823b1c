"""The webhook sender against a real receiver on 127.0.0.1, over a real store file: every event
its patterns take is delivered once, signed as the Standard Webhooks library verifies, after a
receiver that first fails; retries, the allowlist at each attempt, and a restart."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace
from standardwebhooks import Webhook

from netscand import config
from netscand.config import PolicyConfig, WebhooksConfig
from netscand.scan import webhooks as sender_module
from netscand.scan.events import Events
from netscand.scan.limits import CurrentLimits, Limits
from netscand.scan.policy import Policy
from netscand.scan.webhooks import WebhookSender, matches, retry_wait
from netscand.store import Store
from netscand.store import events as stored_events
from netscand.store import webhooks as stored
from netscand.store.threads import StoreThreads
from tests.scan.webhook_receiver import Receiver, receiving

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LOOPBACK = WebhooksConfig(allowed_destinations=["127.0.0.1/32"], timeout=2.0, retry_first=0.05, retry_max=0.2)


class Harness:
    """A sender over a store file, as the orchestrator runs it, on the test's event loop."""

    def __init__(self, path: Path, cfg: WebhooksConfig = LOOPBACK) -> None:
        self.store = Store(path)
        self.io = StoreThreads()
        self.events = Events(self.store, self.io)
        self.limits = CurrentLimits(Limits(rate=1.0, retries=0, max_running=0,
                                           policy=Policy.from_config(PolicyConfig()), webhooks=cfg))
        self.sender = WebhookSender(self.store, self.io, self.events, self.limits)
        self.task: asyncio.Task[None] | None = None

    def hook(self, url: str, events: list[str]) -> dict[str, Any]:
        return self.store.call("create", stored.create, {"id": f"00000000-0000-4000-8000-{time.time_ns() % 10**12:012d}",
                                                         "url": url, "events": events, "secret": SECRET})

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.sender.send_forever())

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.io.drain()
        self.store.close()

    def log(self, hook_id: str) -> list[dict[str, Any]]:
        return self.store.call("log", stored.deliveries, hook_id, 1, 100)[0]


def publish(h: Harness, type_: str, data: dict[str, Any], scan_id: str) -> None:
    """An event written as the inventory writes its changes: inserted, then announced."""
    h.store.call("insert event", stored_events.insert, type_, data, scan_id=scan_id)
    h.events.wake()


async def until(done: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def verified(received: Receiver) -> list[dict[str, Any]]:
    """The payloads the receiver accepted, each verified by the Standard Webhooks library."""
    return [Webhook(SECRET).verify(r.body, r.headers) for r in received.accepted()]


def test_every_event_is_delivered_once_after_the_receiver_recovers(tmp_path: Path) -> None:
    async def scenario() -> None:
        h = Harness(tmp_path / "netscand.db")
        with receiving(failures=3) as receiver:
            hook = h.hook(receiver.url, ["change.*", "scan.state"])
            h.start()
            for port in (22, 80, 443, 8080):
                publish(h, "change.port_opened", {"ip": "198.18.0.5", "port": port}, scan_id="s1")
            publish(h, "scan.progress", {"id": "s1", "progress_percent": 50}, scan_id="s1")
            publish(h, "scan.state", {"id": "s1", "status": "completed"}, scan_id="s1")
            await until(lambda: len(receiver.accepted()) == 5)
            await asyncio.sleep(0.3)  # a retry too many would come now
            payloads = verified(receiver)
            ids = [r.headers["webhook-id"] for r in receiver.accepted()]
            assert len(set(ids)) == 5
            assert sorted(p["data"].get("port", 0) for p in payloads) == [0, 22, 80, 443, 8080]
            assert {p["type"] for p in payloads} == {"change.port_opened", "scan.state"}
            assert all(p["timestamp"].endswith("Z") for p in payloads)
            # The failed attempts were retried under the same webhook-id.
            assert {r.headers["webhook-id"] for r in receiver.received if r.status == 500} <= set(ids)
            log = h.log(hook["id"])
            assert [d["status"] for d in log] == ["delivered"] * 5
            assert sum(d["attempts"] for d in log) == len(receiver.received) == 8
            assert {d["last_status"] for d in log} == {200} and all(d["delivered_at"] for d in log)
            await h.stop()

    run(scenario)


def test_a_webhook_starts_at_the_newest_event(tmp_path: Path) -> None:
    async def scenario() -> None:
        h = Harness(tmp_path / "netscand.db")
        with receiving() as receiver:
            h.start()
            publish(h, "scan.state", {"id": "old", "status": "completed"}, scan_id="old")
            await h.io.drain()
            hook = h.hook(receiver.url, ["*"])
            publish(h, "scan.state", {"id": "new", "status": "running"}, scan_id="new")
            await until(lambda: len(receiver.accepted()) == 1)
            await asyncio.sleep(0.2)
            assert [p["data"]["id"] for p in verified(receiver)] == ["new"]
            assert len(h.log(hook["id"])) == 1
            await h.stop()

    run(scenario)


def test_a_delivery_fails_after_max_attempts(tmp_path: Path) -> None:
    async def scenario() -> None:
        h = Harness(tmp_path / "netscand.db", replace(LOOPBACK, max_attempts=3))
        with receiving(failures=1000) as receiver:
            hook = h.hook(receiver.url, ["scan.*"])
            h.start()
            publish(h, "scan.state", {"id": "s1", "status": "failed"}, scan_id="s1")
            await until(lambda: h.log(hook["id"])[:1] and h.log(hook["id"])[0]["status"] == "failed")
            (delivery,) = h.log(hook["id"])
            assert delivery["attempts"] == 3 and delivery["last_status"] == 500
            assert delivery["last_error"] == "the receiver answered 500" and delivery["next_attempt"] is None
            assert len(receiver.received) == 3
            await h.stop()

    run(scenario)


def test_a_receiver_that_never_answers_times_out_and_holds_up_nothing(tmp_path: Path) -> None:
    # It listens and never accepts: connections complete in its backlog, and no answer comes.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)

    async def scenario() -> None:
        h = Harness(tmp_path / "netscand.db", replace(LOOPBACK, timeout=0.5, max_concurrent=2))
        hook = h.hook(f"http://127.0.0.1:{silent.getsockname()[1]}/", ["*"])
        h.start()
        for n in range(4):
            publish(h, "scan.state", {"id": f"s{n}", "status": "running"}, scan_id=f"s{n}")
        late = 0.0
        while not all(d["attempts"] for d in h.log(hook["id"])) or len(h.log(hook["id"])) < 4:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            late = max(late, time.monotonic() - before - 0.01)
        assert late < 0.2  # the loop kept turning while four attempts waited on the receiver
        assert {d["last_error"] for d in h.log(hook["id"])} == {"no answer within 0.5 s"}
        await h.stop()

    try:
        run(scenario)
    finally:
        silent.close()


def test_the_allowlist_is_checked_at_every_attempt(tmp_path: Path) -> None:
    async def scenario() -> None:
        h = Harness(tmp_path / "netscand.db")
        with receiving() as receiver:
            hook = h.hook(receiver.url, ["*"])
            # A reload narrowed the allowlist after the webhook was made: nothing may be sent.
            h.limits.now = dataclasses.replace(h.limits.now,
                                               webhooks=replace(LOOPBACK, allowed_destinations=["198.18.0.0/15"]))
            h.start()
            publish(h, "scan.state", {"id": "s1", "status": "running"}, scan_id="s1")
            await until(lambda: bool(h.log(hook["id"])) and h.log(hook["id"])[0]["attempts"] >= 2)
            (delivery,) = h.log(hook["id"])
            assert delivery["status"] == "pending" and "127.0.0.1 is outside webhooks.allowed_destinations" \
                in delivery["last_error"] and delivery["last_status"] is None
            assert receiver.received == []
            h.limits.now = dataclasses.replace(h.limits.now, webhooks=LOOPBACK)  # and widened again
            await until(lambda: len(receiver.accepted()) == 1)
            await h.stop()

    run(scenario)


def test_a_name_rebound_after_its_check_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The name resolved inside the allowlist when the webhook was made; now it points at an
    # address outside. The attempt checks the address it would connect to, and connects nowhere.
    async def rebound(self: asyncio.AbstractEventLoop, host: str, port: int, **kwargs: Any) -> list[Any]:
        assert host == "receiver.test"
        return [(2, 1, 6, "", ("127.0.0.2", port))]  # loopback: nothing leaves even if the check failed

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", rebound)

    async def scenario() -> None:
        h = Harness(tmp_path / "netscand.db")
        hook = h.hook("http://receiver.test:8080/hooks", ["*"])
        h.start()
        publish(h, "scan.state", {"id": "s1", "status": "running"}, scan_id="s1")
        await until(lambda: bool(h.log(hook["id"])) and h.log(hook["id"])[0]["attempts"] >= 1)
        assert "receiver.test resolves to 127.0.0.2, which is outside" in h.log(hook["id"])[0]["last_error"]
        await h.stop()

    run(scenario)


def test_a_schedule_that_delivers_only_changes_holds_back_progress(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def only_changes(db: Any, scan_id: str) -> bool:
        asked.append(scan_id)
        return scan_id == "scheduled"

    monkeypatch.setattr(sender_module.schedules, "delivers_only_changes", only_changes)

    async def scenario() -> None:
        h = Harness(tmp_path / "netscand.db")
        with receiving() as receiver:
            h.hook(receiver.url, ["*"])
            h.start()
            for scan in ("scheduled", "other"):
                publish(h, "host.up", {"scan_id": scan, "ip": "198.18.0.5"}, scan_id=scan)
                publish(h, "change.device_appeared", {"scan_id": scan}, scan_id=scan)
                publish(h, "scan.state", {"id": scan, "status": "completed"}, scan_id=scan)
            await until(lambda: len(receiver.accepted()) == 5)
            await asyncio.sleep(0.2)
            got = sorted((p["type"], p["data"].get("scan_id") or p["data"].get("id")) for p in verified(receiver))
            assert got == [("change.device_appeared", "other"), ("change.device_appeared", "scheduled"),
                           ("host.up", "other"), ("scan.state", "other"), ("scan.state", "scheduled")]
            assert sorted(set(asked)) == ["other", "scheduled"]  # only for what is neither change nor state
            await h.stop()

    run(scenario)


def test_pending_deliveries_survive_a_restart(tmp_path: Path) -> None:
    slow = replace(LOOPBACK, retry_first=1.0, retry_max=1.0)

    async def before() -> None:
        h = Harness(tmp_path / "netscand.db", slow)
        with receiving(failures=1000) as receiver:
            hook = h.hook(receiver.url, ["*"])
            h.start()
            publish(h, "scan.state", {"id": "s1", "status": "completed"}, scan_id="s1")
            # Stopped once the failure is recorded (stopped mid-attempt, it would wait out its lease).
            await until(lambda: [d["attempts"] for d in h.log(hook["id"])] == [1])
            first.extend(receiver.received)
            await h.stop()

    async def after() -> None:
        h = Harness(tmp_path / "netscand.db", slow)
        with receiving() as receiver:
            (hook,) = h.store.call("list", stored.enabled)
            h.store.call("move", stored.update, hook["id"], {"url": receiver.url})  # a port of its own
            h.start()
            await until(lambda: len(receiver.accepted()) == 1)
            assert receiver.accepted()[0].headers["webhook-id"] == first[0].headers["webhook-id"]
            assert verified(receiver)[0]["data"] == {"id": "s1", "status": "completed"}
            await h.stop()

    first: list[Any] = []
    run(before)
    run(after)


@pytest.mark.parametrize("patterns, type_, taken", [
    (["*"], "scan.state", True), (["change.*"], "change.port_opened", True), (["change.*"], "changes.x", False),
    (["scan.state"], "scan.state", True), (["scan.state"], "scan.progress", False), ([], "scan.state", False),
    (["scan.*"], "scan", False),
])
def test_patterns(patterns: list[str], type_: str, taken: bool) -> None:
    assert matches(patterns, type_) is taken


def test_retry_waits_grow_and_stay_within_their_bounds() -> None:
    cfg = WebhooksConfig(retry_first=5.0, retry_max=3600.0)
    for attempts in range(1, 20):
        ceiling = min(3600.0, 5.0 * 2 ** (attempts - 1))
        waits = [retry_wait(cfg, attempts) for _ in range(50)]
        assert all(5.0 <= w <= ceiling for w in waits)
    assert max(retry_wait(cfg, 12) for _ in range(200)) > 1000  # jittered up to the hour


@pytest.mark.parametrize("per_webhook", [1, 2, 3])
def test_a_hanging_receiver_leaves_the_others_their_places(tmp_path: Path, per_webhook: int) -> None:
    # A burst to a receiver that never answers, then one event for a healthy receiver: the burst
    # is due first, yet holds only per_webhook_concurrent of the four places for its whole timeout.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)

    async def scenario() -> None:
        h = Harness(tmp_path / "netscand.db", replace(LOOPBACK, timeout=10.0, max_concurrent=4,
                                                      per_webhook_concurrent=per_webhook))
        with receiving() as receiver:
            hanging = h.hook(f"http://127.0.0.1:{silent.getsockname()[1]}/", ["scan.progress"])
            h.hook(receiver.url, ["scan.state"])
            for n in range(10):
                publish(h, "scan.progress", {"id": "s1", "progress_percent": n}, scan_id="s1")
            publish(h, "scan.state", {"id": "s1", "status": "completed"}, scan_id="s1")
            started = time.monotonic()
            h.start()
            await until(lambda: len(receiver.accepted()) == 1, timeout=5.0)
            assert time.monotonic() - started < 2.0
            assert list(h.sender._sending.values()).count(hanging["id"]) == per_webhook  # still waiting
            assert sum(d["attempts"] for d in h.log(hanging["id"])) == 0  # none of its others taken
            await h.stop()

    try:
        run(scenario)
    finally:
        silent.close()


def test_a_status_outside_http_is_an_error_not_a_status(tmp_path: Path) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 700 Odd\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        h = Harness(tmp_path / "netscand.db", replace(LOOPBACK, max_attempts=1))
        hook = h.hook(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/", ["*"])
        h.start()
        publish(h, "scan.state", {"id": "s1", "status": "running"}, scan_id="s1")
        await until(lambda: bool(h.log(hook["id"])) and h.log(hook["id"])[0]["status"] == "failed")
        (delivery,) = h.log(hook["id"])
        assert delivery["last_status"] is None and delivery["last_error"] == \
            "the receiver answered 700, which is no HTTP status"
        await h.stop()
        server.close()

    run(scenario)


def test_the_next_address_of_a_name_is_tried_when_one_refuses(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    async def two(self: asyncio.AbstractEventLoop, host: str, port: int, **kwargs: Any) -> list[Any]:
        return [(2, 1, 6, "", ("127.0.0.2", port)), (2, 1, 6, "", ("127.0.0.1", port))]  # nothing on .2

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", two)

    async def scenario() -> None:
        h = Harness(tmp_path / "netscand.db", replace(LOOPBACK, allowed_destinations=["127.0.0.1/32", "127.0.0.2/32"]))
        with receiving() as receiver:
            hook = h.hook(receiver.url.replace("127.0.0.1", "receiver.test"), ["*"])
            h.start()
            publish(h, "scan.state", {"id": "s1", "status": "running"}, scan_id="s1")
            await until(lambda: len(receiver.accepted()) == 1)
            assert receiver.accepted()[0].headers["host"].startswith("receiver.test:")
            # Recorded once the answer is in: not necessarily by the time the receiver kept it.
            await until(lambda: [(d["status"], d["attempts"]) for d in h.log(hook["id"])] == [("delivered", 1)])
            await h.stop()

    run(scenario)


def test_an_outcome_that_cannot_be_recorded_fails_the_delivery_once(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> dict[str, Any]:
        raise OverflowError("(34, 'Numerical result out of range')")

    monkeypatch.setattr(sender_module, "_outcome", broken)

    async def scenario() -> None:
        h = Harness(tmp_path / "netscand.db")
        with receiving(failures=1000) as receiver:
            hook = h.hook(receiver.url, ["*"])
            h.start()
            publish(h, "scan.state", {"id": "s1", "status": "running"}, scan_id="s1")
            await until(lambda: bool(h.log(hook["id"])) and h.log(hook["id"])[0]["status"] == "failed")
            await asyncio.sleep(0.3)  # a resend would come now
            (delivery,) = h.log(hook["id"])
            assert delivery["attempts"] == 1 and len(receiver.received) == 1
            assert delivery["last_error"].startswith("given up: its outcome could not be recorded (OverflowError")
            await h.stop()

    run(scenario)


@given(st.integers(min_value=1, max_value=10**6))
def test_a_retry_wait_is_bounded_however_many_the_attempts(attempts: int) -> None:
    cfg = WebhooksConfig(retry_first=5.0, retry_max=3600.0)
    assert 5.0 <= retry_wait(cfg, attempts) <= 3600.0


@pytest.mark.parametrize("attempts, valid", [(1, True), (100, True), (0, False), (101, False), (5000, False)])
def test_max_attempts_is_bounded_in_the_config(tmp_path: Path, attempts: int, valid: bool) -> None:
    path = tmp_path / "netscand.toml"
    path.write_text(f"[webhooks]\nmax_attempts = {attempts}\n")
    if valid:
        assert config.load(path).webhooks.max_attempts == attempts
    else:
        with pytest.raises(config.ConfigError, match="webhooks.max_attempts: expected an integer >= 1 <= 100"):
            config.load(path)


@pytest.mark.parametrize("value, valid", [(1, True), (2, True), (64, True), (0, False), (65, False), ("2", False)])
def test_per_webhook_concurrent_is_bounded_in_the_config(tmp_path: Path, value: Any, valid: bool) -> None:
    path = tmp_path / "netscand.toml"
    path.write_text(f"[webhooks]\nper_webhook_concurrent = {value!r}\n".replace("'", '"'))
    if valid:
        assert config.load(path).webhooks.per_webhook_concurrent == value
    else:
        with pytest.raises(config.ConfigError, match="^[^\n]*webhooks.per_webhook_concurrent: expected an integer"
                                                     " >= 1 <= 64, got [^\n]*$"):
            config.load(path)
    assert WebhooksConfig().per_webhook_concurrent == 2
