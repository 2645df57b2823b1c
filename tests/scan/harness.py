"""The running scans (live.py) over a fake engine (fake_engine.py) and a scripted network
(test_runner_unit's), written to a real SQLite store: the Harness of the scan layer's tests
(conftest's `harness` fixture builds one), and helpers to run a test's body with it ticking."""

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
from netscand.scan.spec import ScanSpec
from netscand.scan.targets import parse_targets
from netscand.store import Store, StoreError, checkpoints
from netscand.store import events as stored_events
from tests.scan.fake_engine import FakeEngine
from tests.scan.test_runner_unit import Device, FakeNet, Network, mac

T = TypeVar("T")
TARGET = "198.18.0.0/29"  # on-link in FakeNet: ARP, then the port scan
NETWORK = {"198.18.0.2": Device(mac(2), {22}), "198.18.0.5": Device(mac(5), {22, 80})}


class WatchedStore(Store):
    """The real store, with the order of its scan writes kept, and refusing the writes a test
    names (as a full or read-only disk would refuse them: a StoreError)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes: list[tuple[str, str, str | None]] = []  # (scan id, "devices" | "state" | ..., status)
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
        if query is checkpoints.begin and self.refuse(args[0], {"checkpoint begun": args[1]}):
            raise StoreError(f"{doing}: the disk is full", "the disk is full")
        if query is checkpoints.save and self.refuse(args[0], {"checkpoint": args[1]}):
            raise StoreError(f"{doing}: the disk is full", "the disk is full")
        if query is checkpoints.drop:
            self.writes.append((args[0], "checkpoint dropped", None))
        return super().call(doing, query, *args, **kwargs)

    def checkpoint(self, scan_id: str) -> checkpoints.Stored | None:
        return self.call("read", checkpoints.load, scan_id)

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
