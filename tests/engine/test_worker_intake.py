"""A real Worker's way in for received frames (what _receive does with each), and a real
Dispatcher failing a plan whose workers keep dying. The worker is stepped by hand over a real
shared region; its plan's sender is a real Sender on an unbound Unix socket, and nothing is
ever flushed through it."""

from __future__ import annotations

import socket
import struct
import time

import dpkt

from netscand.engine import frames
from netscand.engine import plan as plans
from netscand.engine.cookie import cookie
from netscand.engine.guard import PlanGuard
from netscand.engine.probes import tcp_syn
from netscand.engine.probes.tcp_syn import TcpSyn
from netscand.engine.ranges import of_cidrs
from netscand.engine.shards import PlanState
from netscand.engine.shm import (
    JOB,
    JOB_SHARD,
    MALFORMED,
    R_PORT,
    S_OPEN,
    Result,
    Shared,
)
from netscand.engine.sockets import Sender
from netscand.engine.worker import Worker
from netscand.scan.dispatch import CRASHED, MAX_CRASHES, Dispatcher

SRC_MAC, HOST_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000010")
SRC_IP, HOST = 0xC6120001, 0xC6120010
GUARD = PlanGuard(of_cidrs(["198.18.0.0/15"]), (), 1000.0)


def make_plan(slot: int = 1, gen: int = 11, hosts: int = 1, ports: tuple[int, ...] = (80,)) -> plans.Plan:
    addrs = tuple(HOST + i for i in range(hosts))
    return plans.Plan(gen=gen, kind=tcp_syn.PROBE.kind, slot=slot, share=1, retries=0, key=b"q" * 16,
                      ifindex=1, src_ip=SRC_IP, src_mac=SRC_MAC, sport_base=61440, rate=100.0,
                      timeout_init_ms=100, timeout_min_ms=100, timeout_max_ms=100, shard_size=1024,
                      hosts=addrs, macs=(HOST_MAC,) * hosts, ports=ports)


def syn_ack(plan: plans.Plan, window: int = 29200) -> bytes:
    sport = plan.sport_base + 3
    c = cookie(plan.key, plan.slot, HOST, 80, sport)
    tcp = dpkt.tcp.TCP(sport=80, dport=sport, ack=c + 1, flags=0x12, win=window, off=6, opts=b"\x02\x04\x05\xb4")
    ip = dpkt.ip.IP(src=HOST.to_bytes(4, "big"), dst=SRC_IP.to_bytes(4, "big"), p=6, ttl=64, data=tcp)
    return bytes(dpkt.ethernet.Ethernet(src=HOST_MAC, dst=SRC_MAC, data=ip))


ISSUE_FRAME = (SRC_MAC + HOST_MAC + b"\x08\x00"
               + struct.pack("!BBHHHBBH4s4s", 0x4F, 0, 61, 0, 0, 64, 1, 0, HOST.to_bytes(4, "big"),
                             SRC_IP.to_bytes(4, "big")) + b"\x01" * 40 + b"\x03")


class Broken(TcpSyn):
    """A probe with a parser bug, standing in for the next one nobody has found yet."""

    def answer(self, frame: bytes) -> None:
        raise IndexError("index out of range")


def worker_with(plan: plans.Plan) -> tuple[Shared, Worker, PlanState]:
    shared = Shared(1)
    worker = Worker(shared, 0, GUARD, lambda: GUARD)
    state = worker.plans[plan.slot] = PlanState(plan, Sender(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)))
    return shared, worker, state


def take(worker: Worker, frame: bytes) -> None:
    """What the worker's receive loop does with a frame."""
    worker.replies.take(frame, worker.plans.values())


def malformed(shared: Shared) -> dict[str, int]:
    return {MALFORMED[code]: count for code, count in enumerate(shared.malformed(0)) if count}


def test_frames_are_matched_counted_or_dropped_and_the_counts_reach_the_worker_table() -> None:
    plan = make_plan()
    shared, worker, _ = worker_with(plan)
    take(worker, syn_ack(plan))
    (r,) = [Result.unpack(raw) for raw in shared.results[0].pop_many(10)]
    assert (r.kind, r.state, r.ip, r.port) == (R_PORT, S_OPEN, HOST, 80)
    take(worker, ISSUE_FRAME)
    damaged = bytearray(syn_ack(plan, window=1000))
    damaged[48] ^= 0x40  # the window, which no cookie covers: the TCP checksum no longer adds up
    take(worker, bytes(damaged))
    take(worker, b"\x00" * 7)
    assert worker.replies.matched == 1
    worker._beat(time.monotonic())
    assert malformed(shared) == {"truncated": 2, "bad_checksum": 1}


def test_a_probe_that_raises_is_counted_and_the_worker_goes_on() -> None:
    plan = make_plan()
    shared, worker, state = worker_with(plan)
    state.probe = Broken(plan)
    for _ in range(3):
        take(worker, syn_ack(plan))  # raises inside; must not escape
    assert worker.replies.malformed[frames.PARSER_ERROR] == 3 and worker.replies.unlogged == 2  # one line logged, two held back
    state.probe = TcpSyn(plan)
    take(worker, syn_ack(plan))
    assert worker.replies.matched == 1
    worker._beat(time.monotonic())
    assert malformed(shared) == {"parser_error": 3}


def test_a_restarted_worker_keeps_its_predecessors_counts() -> None:
    plan = make_plan()
    shared, worker, _ = worker_with(plan)
    take(worker, ISSUE_FRAME)
    worker._beat(time.monotonic())
    successor = Worker(shared, 0, GUARD, lambda: GUARD)
    successor._beat(time.monotonic())
    assert successor.generation == worker.generation + 1
    assert malformed(shared) == {"truncated": 1}


# -- the dispatcher: a plan its workers keep dying on fails; the others go on --------------------
def restart(shared: Shared, index: int) -> None:
    """What the supervisor does for a dead worker: a new one, one generation on."""
    Worker(shared, index, GUARD, lambda: GUARD)._beat(time.monotonic())


def test_a_plan_whose_workers_keep_dying_fails_with_the_reason() -> None:
    shared = Shared(2)
    for w in range(2):
        restart(shared, w)
    dispatcher = Dispatcher(shared)
    failures: list[str] = []
    big = dispatcher.submit(lambda slot, gen: make_plan(slot, gen, hosts=8, ports=tuple(range(1, 1025))),
                            lambda r: None, failures.append)
    assert big.plan.shards > 4 and all(dispatcher.assigned[w] for w in range(2))
    for crash in range(1, MAX_CRASHES):
        restart(shared, crash % 2)
        dispatcher.poll()
        assert big.crashes == crash and not failures
        assert dispatcher.assigned[crash % 2]  # its shards were given out again
    restart(shared, 0)
    dispatcher.poll()
    assert failures == [CRASHED] == ["engine worker crashed 3 times while running this scan's probes"]
    assert dispatcher.free_slot == 0 and not any(dispatcher.assigned)  # retired: nothing re-issued
    # The engine goes on: a new plan is handed out as usual.
    other = dispatcher.submit(lambda slot, gen: make_plan(slot, gen), lambda r: None, failures.append)
    assert any((other.plan.gen, 0) in a for a in dispatcher.assigned)
    assert len(failures) == 1


def test_a_restart_of_a_worker_holding_none_of_a_plan_does_not_count_against_it() -> None:
    shared = Shared(2)
    for w in range(2):
        restart(shared, w)
    dispatcher = Dispatcher(shared)
    small = dispatcher.submit(lambda slot, gen: make_plan(slot, gen), lambda r: None, lambda reason: None)
    idle = next(w for w in range(2) if not dispatcher.assigned[w])
    for _ in range(MAX_CRASHES + 1):
        restart(shared, idle)
        dispatcher.poll()
    assert small.crashes == 0 and dispatcher.slots[small.plan.slot] is small


def test_jobs_naming_no_plan_slot_or_no_shard_of_the_plan_are_dropped_not_fatal() -> None:
    plan = make_plan()
    shared, worker, _ = worker_with(plan)
    plans.write(shared.plans[plan.slot], plan)
    for slot, shard in ((9, 0), (255, 0), (plan.slot, 999), (plan.slot, plan.shards)):
        assert shared.jobs[0].push(JOB.pack(JOB_SHARD, slot, 0, 0, worker.generation, plan.gen, shard, 0))
    worker._take_jobs()
    assert not worker.shards.sending and not worker.backlog
    assert shared.jobs[0].push(JOB.pack(JOB_SHARD, plan.slot, 0, 0, worker.generation, plan.gen, 0, 0))
    worker._take_jobs()
    assert [(run.ps.plan.gen, run.shard) for run in worker.shards.sending] == [(plan.gen, 0)]
