"""The running scans (live.py) as a unit, without root or a lab: scans started from the queue run
over a fake engine (fake_engine.py) and a scripted network (test_runner_unit's), and are written
to a real SQLite store in a temporary directory. What is checked is what the control process
promises around a running scan: its last devices land before its final state, a store that
refuses a write fails that scan and never the daemon, shutdown gives every place back, state the
store refused is served from memory until a later tick writes it, and a profiling stage that
raises still ends its scan."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from netscand.config import PolicyConfig
from netscand.scan.admission import Claims
from netscand.scan.live import Live
from netscand.scan.policy import Policy
from netscand.scan.profiles import ScanRequest
from netscand.scan.queue import Queued
from netscand.scan.runner import ScanRun
from netscand.scan.spec import ScanSpec
from netscand.scan.stages import ProfilingStage
from netscand.scan.targets import parse_targets
from netscand.store import Store, StoreError
from netscand.store import events as stored_events
from tests.scan.fake_engine import FakeEngine
from tests.scan.test_runner_unit import Device, FakeNet, Network, mac

T = TypeVar("T")
TARGET = "198.18.0.0/29"  # on-link in FakeNet: ARP, then the port scan
NETWORK = {"198.18.0.2": Device(mac(2), {22}), "198.18.0.5": Device(mac(5), {22, 80})}
REASON = "netscand is shutting down"


class WatchedStore(Store):
    """The real store, with the order of its scan writes kept, and refusing the writes a test
    names (as a full or read-only disk would refuse them: a StoreError)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes: list[tuple[str, str, str | None]] = []  # (scan id, "devices" | "state", status)
        self.refuse: Callable[[str, dict[str, Any]], bool] = lambda scan_id, fields: False

    def update_scan(self, scan_id: str, **fields: Any) -> dict[str, Any]:
        if self.refuse(scan_id, fields):
            raise StoreError(f"cannot update scan {scan_id}: the disk is full", "the disk is full")
        self.writes.append((scan_id, "state", fields.get("status")))
        return super().update_scan(scan_id, **fields)

    def call(self, doing: str, query: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if query is stored_events.update_scan:  # a scan's state, with its events
            scan_id, fields = args[:2]
            if self.refuse(scan_id, fields):
                raise StoreError(f"{doing}: the disk is full", "the disk is full")
            self.writes.append((scan_id, "state", fields.get("status")))
        return super().call(doing, query, *args, **kwargs)

    def put_devices(self, scan_id: str, devices: list[dict[str, Any]]) -> None:
        self.writes.append((scan_id, "devices", None))
        super().put_devices(scan_id, devices)

    def put_cves(self, scan_id: str, devices: list[dict[str, Any]], cve: dict[str, Any]) -> None:
        if self.refuse(scan_id, {"cve": cve}):
            raise StoreError(f"cannot save the CVEs of scan {scan_id}: the disk is full", "the disk is full")
        super().put_cves(scan_id, devices, cve)


@dataclasses.dataclass
class Harness:
    store: WatchedStore
    engine: FakeEngine
    live: Live
    claims: Claims
    network: Network = dataclasses.field(default_factory=lambda: Network(NETWORK))

    def enqueue(self, owner: str, profiling: bool = False, cve_match: bool = False) -> str:
        """A scan accepted for `owner` (holding one of its places) and waiting to run."""
        scan_id = str(uuid.uuid4())
        self.store.create_scan({"id": scan_id, "target": TARGET, "profile": "normal", "owner": owner})
        spec = ScanSpec(parse_targets(TARGET), (22, 80), 3000.0, retries=1, profiling=profiling, cve_match=cve_match)
        with self.claims.claim(owner, 16) as claimed:
            claimed.keep()
        self.live.queue.push(Queued(scan_id, owner, ScanRequest(TARGET), spec, FakeNet(), remote=False))
        return scan_id

    async def serve(self) -> None:
        """The engine answering every plan, as the workers' eventfds would wake the loop."""
        while True:
            self.engine.serve(self.network.answer)
            self.live.wake()
            await asyncio.sleep(0.01)

    def status(self, scan_id: str) -> str:
        scan = self.store.get_scan(scan_id)
        assert scan is not None
        return str(scan["status"])


def policy() -> Policy:
    return Policy.from_config(PolicyConfig(allowed_targets=["198.18.0.0/15"], max_rate=5000.0))


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def until(done: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not done():
            await asyncio.sleep(0.02)


async def running(harness: Harness, body: Callable[[], Awaitable[None]], serve: bool = True) -> None:
    """`body` with the live scans ticking (and the engine answering, with `serve`) meanwhile."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(harness.live.tick_forever())] + ([loop.create_task(harness.serve())] if serve else [])
    try:
        await body()
    finally:
        for task in tasks:
            task.cancel()
        await harness.live.ended()
        await harness.live.persist.io.drain()


def test_a_scans_last_devices_are_written_before_its_final_state(harness: Harness) -> None:
    scan_id = harness.enqueue("alice")

    async def body() -> None:
        harness.live.admit()
        await until(lambda: not harness.live.running and not harness.live.finishing)

    run(running(harness, body))
    writes = [w for w in harness.store.writes if w[0] == scan_id]
    final = writes.index((scan_id, "state", "completed"))
    assert (scan_id, "devices", None) in writes[:final] and (scan_id, "devices", None) not in writes[final:]
    assert harness.status(scan_id) == "completed"
    assert [d["ip"] for d in harness.store.result(scan_id)] == ["198.18.0.2", "198.18.0.5"]


def test_a_store_refusing_a_flush_fails_that_scan_and_the_next_one_starts(harness: Harness) -> None:
    first, second = harness.enqueue("alice"), harness.enqueue("bob")
    # The first scan's progress write (no status in it) is refused; its failure is written.
    harness.store.refuse = lambda scan_id, fields: scan_id == first and "status" not in fields

    async def body() -> None:
        harness.live.admit()  # the first runs; with no engine answering, it is still running at the tick
        await until(lambda: second in harness.live.running)

    run(running(harness, body, serve=False))
    assert harness.status(first) == "failed"
    assert harness.store.get_scan(first)["error"] == "storage: the disk is full"  # type: ignore[index]
    assert harness.status(second) == "running" and first not in harness.live.running


def test_shutdown_cancels_every_scan_and_gives_back_every_place(harness: Harness) -> None:
    scans = [harness.enqueue("alice"), harness.enqueue("alice"), harness.enqueue("bob")]

    async def body() -> None:
        harness.live.admit()
        assert list(harness.live.running) == scans[:1] and harness.claims.waiting == {"alice": 1, "bob": 1}
        harness.live.stop_all(REASON)
        harness.live.admit()  # a place freed while shutting down starts nothing

    run(running(harness, body, serve=False))
    assert not harness.live.running and not harness.live.queue and not harness.claims.waiting
    for scan_id in scans:
        scan = harness.store.get_scan(scan_id)
        assert scan is not None and (scan["status"], scan["error"]) == ("cancelled", REASON)


def test_state_the_store_refused_is_served_from_memory_and_written_on_a_later_tick(harness: Harness) -> None:
    scan_id = harness.enqueue("alice")
    refusing = True
    harness.store.refuse = lambda sid, fields: refusing and fields.get("status") == "running"
    persist = harness.live.persist

    async def body() -> None:
        nonlocal refusing
        harness.live.admit()
        await until(lambda: scan_id not in persist._saving)  # the write came back refused
        assert harness.status(scan_id) == "queued" and scan_id in persist.unsaved
        served = await persist.scan(scan_id)
        assert served is not None and served["status"] == "running"
        refusing = False  # the disk has room again: the next tick writes what was kept
        await until(lambda: scan_id not in persist.unsaved)

    run(running(harness, body, serve=False))
    assert harness.status(scan_id) == "running"


class FailingStage(ProfilingStage):
    async def run(self, run: ScanRun) -> None:
        raise RuntimeError("the service detector broke")


def test_a_profiling_stage_that_raises_still_completes_its_scan(harness: Harness) -> None:
    harness.live.stage = FailingStage()
    scan_id = harness.enqueue("alice", profiling=True)

    async def body() -> None:
        harness.live.admit()
        await until(lambda: not harness.live.running and not harness.live.finishing)

    run(running(harness, body))
    scan = harness.store.get_scan(scan_id)
    assert scan is not None and (scan["status"], scan["error"], scan["hosts_found"]) == ("completed", None, 2)
    assert len(harness.store.result(scan_id)) == 2  # the port results stand


def test_a_cve_write_the_store_refuses_still_completes_its_scan(harness: Harness) -> None:
    harness.store.refuse = lambda scan_id, fields: "cve" in fields
    scan_id = harness.enqueue("alice", cve_match=True)

    async def body() -> None:
        harness.live.admit()
        await until(lambda: not harness.live.running and not harness.live.finishing)

    run(running(harness, body))
    scan = harness.store.get_scan(scan_id)
    assert scan is not None and (scan["status"], scan["error"], scan["hosts_found"]) == ("completed", None, 2)
    assert len(harness.store.result(scan_id)) == 2  # the port results stand
