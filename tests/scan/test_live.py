"""The running scans (live.py) as a unit, without root or a lab: scans started from the queue run
over a fake engine (fake_engine.py) and a scripted network (test_runner_unit's), and are written
to a real SQLite store in a temporary directory. What is checked is what the control process
promises around a running scan: its last devices land before its final state, a store that
refuses a write fails that scan and never the daemon, shutdown gives every place back, state the
store refused is served from memory until a later tick writes it, and a profiling stage that
raises still ends its scan."""

from __future__ import annotations

import pytest

from netscand.scan.runner import ScanRun
from netscand.scan.stages import ProfilingStage
from tests.scan.harness import Harness, run, running, until

REASON = "netscand is shutting down"


def test_a_scans_last_devices_are_written_before_its_final_state(harness: Harness) -> None:
    scan_id = harness.enqueue("alice")

    async def body() -> None:
        harness.live.admit()
        await until(lambda: not harness.live.running and not harness.live.finishing)

    run(running(harness, body))
    writes = [w for w in harness.store.writes if w[0] == scan_id]
    final = writes.index((scan_id, "state", "completed"))
    assert (scan_id, "devices", None) in writes[:final] and (scan_id, "devices", None) not in writes[final:]
    # Its checkpoint goes after its state: a kill between them leaves no finished scan read as interrupted.
    assert writes.index((scan_id, "checkpoint dropped", None)) > final and harness.store.checkpoint(scan_id) is None
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
    assert harness.store.checkpoint(first) is None  # it will not resume: nothing left to read


# The first write (its spec: "checkpoint begun") or a later one (its progress: "checkpoint").
@pytest.mark.parametrize("refused", ["checkpoint begun", "checkpoint"])
def test_a_store_refusing_a_checkpoint_fails_that_scan_with_why_and_frees_its_plans(harness: Harness, refused: str) -> None:
    scan_id = harness.enqueue("alice")
    harness.store.refuse = lambda sid, fields: refused in fields

    async def body() -> None:
        harness.live.admit()
        await until(lambda: scan_id not in harness.live.running and not harness.live.finishing)

    run(running(harness, body, serve=False))
    scan = harness.store.get_scan(scan_id)
    assert scan is not None and (scan["status"], scan["error"]) == ("failed", "storage: the disk is full")
    # Its shards waited for that write: its plan slot and the workers' shards are given back.
    assert harness.live.dispatcher.slots == [None] * len(harness.live.dispatcher.slots)
    assert not any(harness.live.dispatcher.assigned)


def test_shutdown_suspends_a_running_scan_and_leaves_the_queued_ones_queued(harness: Harness) -> None:
    scans = [harness.enqueue("alice"), harness.enqueue("alice"), harness.enqueue("bob")]

    async def body() -> None:
        harness.live.admit()
        assert list(harness.live.running) == scans[:1] and harness.claims.waiting == {"alice": 1, "bob": 1}
        harness.live.stop_all(REASON)
        harness.live.admit()  # a place freed while shutting down starts nothing

    run(running(harness, body, serve=False))
    assert not harness.live.running and [q.id for q in harness.live.queue.waiting] == scans[1:]
    # The running one has a checkpoint: it stays running, to resume at the next start (resume.py).
    running_scan = harness.store.get_scan(scans[0])
    assert running_scan is not None and (running_scan["status"], running_scan["error"]) == ("running", None)
    assert running_scan["estimated_completion"] is None
    # The queued ones are queued again at the next start (Orchestrator.interrupted).
    for scan_id in scans[1:]:
        scan = harness.store.get_scan(scan_id)
        assert scan is not None and (scan["status"], scan["error"], scan["finished_at"]) == ("queued", None, None)


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
