"""The send path's batches built over arrays (Permutation.many, TcpSyn.frames, Sender.rows,
Shards._bulk) against the per-probe path (Permutation.__call__, TcpSyn.frame, Sender.__call__,
Shards._each): the same offsets, byte-identical frames, and a whole batch sends the same frames
in the same order, passes the same positions and spends the same tokens, on a first pass, a
retry pass over what got no answer and a resumed keyed pass with answers already in."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from contextlib import closing, contextmanager
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netscand.engine import plan as plans
from netscand.engine import shards as shards_module
from netscand.engine.pacing import Pacer
from netscand.engine.permutation import MANY_MAX, Permutation
from netscand.engine.probes import tcp_syn, tcp_syn_kernel
from netscand.engine.probes.tcp_syn import SCANNER_SHAPE, TcpSyn
from netscand.engine.shards import PlanState, ShardRun, Shards
from netscand.engine.shm import SHARD_MAX, Shared
from netscand.engine.sockets import Sender
from netscand.engine.synshape import SynShape
from tests.engine.links import PairLink

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Frames a test's socket pair holds unread before a send blocks (74-byte frames, default buffers).
UNREAD_MAX = 200


# -- the permutation -------------------------------------------------------------------------

@st.composite
def spans(draw: st.DrawFn) -> tuple[Permutation, int, int]:
    """A permutation (shard sizes, and beyond: up to many()'s limit) and a span of its indices."""
    n = draw(st.one_of(st.integers(1, SHARD_MAX), st.integers(1, MANY_MAX)))
    perm = Permutation(n, draw(st.binary(max_size=20)))
    count = draw(st.integers(0, min(n, 300)))
    return perm, draw(st.integers(0, n - count)), count


@PROPS
@given(spans())
def test_many_is_the_permutation_over_a_span(span: tuple[Permutation, int, int]) -> None:
    perm, first, count = span
    got = perm.many(first, count)
    assert got.dtype == np.int64
    assert got.tolist() == [perm(i) for i in range(first, first + count)]


def test_many_covers_a_whole_walked_shard_once() -> None:
    """65521 is prime: the network permutes 65536 values, and 15 of them walk."""
    perm = Permutation(65521, b"walk")
    assert sorted(perm.many(0, 65521).tolist()) == list(range(65521))


def test_many_refuses_what_it_cannot_compute_exactly() -> None:
    with pytest.raises(IndexError):
        Permutation(10, b"k").many(5, 6)
    with pytest.raises(IndexError):
        Permutation(10, b"k").many(-1, 2)
    with pytest.raises(ValueError):
        Permutation(MANY_MAX + 1, b"k").many(0, 1)


# -- the frames ------------------------------------------------------------------------------

addresses = st.integers(0, 0xFFFFFFFF)


@st.composite
def syn_plans(draw: st.DrawFn, max_hosts: int = 8, max_ports: int = 8) -> plans.Plan:
    """A tcp_syn plan: any addresses, a MAC per host, repeated hosts and ports, any slot."""
    hosts = tuple(draw(st.lists(addresses, min_size=1, max_size=max_hosts)))
    ports = tuple(draw(st.lists(st.integers(1, 0xFFFF), min_size=1, max_size=max_ports)))
    slot = draw(st.integers(0, 3))
    size = len(hosts) * len(ports)
    return plans.Plan(
        gen=draw(st.integers(1, 1000)), kind=tcp_syn.PROBE.kind, slot=slot, share=1, retries=2,
        key=draw(st.binary(min_size=16, max_size=16)), ifindex=1, src_ip=draw(addresses),
        src_mac=draw(st.binary(min_size=6, max_size=6)), sport_base=draw(st.integers(0, 0xFFFF - 1023)),
        rate=1e6, timeout_init_ms=1000, timeout_min_ms=100, timeout_max_ms=3000,
        shard_size=draw(st.integers(1, size)), hosts=hosts,
        macs=tuple(draw(st.binary(min_size=6, max_size=6)) for _ in hosts), ports=ports)


shapes = st.one_of(st.just(SCANNER_SHAPE), st.builds(
    SynShape, st.integers(1, 255), st.integers(0, 255), st.booleans(), st.integers(0, 0xFFFF),
    st.integers(0, 0xFF), st.binary(max_size=40)))


def pair_sender() -> tuple[Sender, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    return Sender(ours), theirs


@PROPS
@given(syn_plans(), shapes, st.data())
def test_frames_are_frame_byte_for_byte(plan: plans.Plan, shape: SynShape, data: st.DataObject) -> None:
    probe = TcpSyn(plan, shape)
    n = data.draw(st.integers(1, Sender.ROWS_MAX))
    hosts = data.draw(st.lists(st.integers(0, len(plan.hosts) - 1), min_size=n, max_size=n))
    ports = data.draw(st.lists(st.integers(0, len(plan.ports) - 1), min_size=n, max_size=n))
    tick = data.draw(st.integers(0, 1 << 40))
    send, theirs = pair_sender()
    with closing(send), theirs:
        send(bytearray(b"queued before"))  # rows() hands out the rows after what is queued
        rows, lengths = send.rows(n)
        rows[:] = 0xA5  # a row's bytes left by an earlier frame
        probe.frames(np.array(hosts), np.array(ports), tick, rows, lengths)
        for i in range(n):
            assert bytes(rows[i, : int(lengths[i])]) == bytes(probe.frame(hosts[i], ports[i], tick))


# -- the sender ------------------------------------------------------------------------------

def test_rows_go_after_what_is_queued_and_the_buffer_grows_bounded() -> None:
    send, theirs = pair_sender()
    theirs.setblocking(False)
    with closing(send), theirs:
        send(bytearray(b"one"))
        rows, lengths = send.rows(2)
        rows[0, :3], rows[1, :3], lengths[:] = list(b"two"), list(b"six"), 3
        send.add_rows(2)
        send.flush()
        assert [theirs.recv(64) for _ in range(3)] == [b"one", b"two", b"six"]
        rows, lengths = send.rows(100)  # more than the 64 it holds: it grows
        assert rows.shape == (100, Sender.FRAME_MAX) and len(lengths) == 100
        with pytest.raises(ValueError):
            send.rows(Sender.ROWS_MAX + 1)
        send(bytearray(b"ten"))  # what rows() handed out, never added, is not sent
        send.flush()
        assert theirs.recv(64) == b"ten"
        with pytest.raises(BlockingIOError):
            theirs.recv(64)


# -- whole batches -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared() -> Shared:
    """One region for every example (its eventfds are never closed): a rig per worker index."""
    return Shared(2)


class Rig:
    """One shard of a plan in a Shards of worker `index`, sending through a socket pair; `bulk`
    says which path."""

    def __init__(self, shared: Shared, index: int, plan: plans.Plan, bulk: bool, attempt: int = 0,
                 pos: int = 0) -> None:
        self.link = PairLink()
        plans.write(shared.plans[plan.slot], plan)
        self.shards = Shards(shared, index, lambda record: None, 0)
        self.state = PlanState(plan, self.link.transmitter(1, False))
        assert self.state.bulk is not None
        if not bulk:
            self.state.bulk = None
        self.shards.start(self.state, 0, attempt, pos)
        self.run: ShardRun = self.shards.sending.popleft()
        self.ceiling = Pacer(1e9)

    def batch(self, n: int, now: float) -> tuple[int, list[bytes]]:
        """One batch of up to n: how many went, and the frames."""
        self.state.pacer.tokens = self.ceiling.tokens = 1e6
        with mock.patch.object(shards_module, "BULK_LEAST", 1):
            sent = self.shards._batch(self.run, n, now, self.ceiling)
        assert self.state.pacer.tokens == self.ceiling.tokens == 1e6 - sent
        return sent, self.link.sent()


@contextmanager
def rigs(shared: Shared, plan: plans.Plan, attempt: int = 0, pos: int = 0) -> Iterator[tuple[Rig, Rig]]:
    """The same shard in two rigs: one in bulk, one per probe."""
    bulk, each = Rig(shared, 0, plan, True, attempt, pos), Rig(shared, 1, plan, False, attempt, pos)
    try:
        yield bulk, each
    finally:
        bulk.link.close()
        each.link.close()


def same_batches(bulk: Rig, each: Rig, sizes: list[int], now: float) -> None:
    for n in sizes:
        assert bulk.batch(n, now) == each.batch(n, now)
        assert bulk.run.pos == each.run.pos
        assert bulk.shards.sent == each.shards.sent
        now += 0.013  # another tick


batch_sizes = st.lists(st.integers(1, UNREAD_MAX), min_size=1, max_size=6)


@PROPS
@given(syn_plans(max_hosts=16, max_ports=40), batch_sizes, st.floats(0, 1e6), st.data())
def test_a_batch_sends_what_the_per_probe_path_sends(shared: Shared, plan: plans.Plan, sizes: list[int],
                                                    now: float, data: st.DataObject) -> None:
    """A first pass, then a retry pass over what got no answer, answers also coming in during it."""
    with rigs(shared, plan) as (bulk, each):
        same_batches(bulk, each, sizes, now)
        answered = data.draw(st.lists(st.booleans(), min_size=bulk.run.length, max_size=bulk.run.length))
        late = data.draw(st.lists(st.integers(0, bulk.run.length - 1), max_size=10))
        for rig in (bulk, each):
            rig.run.states[: rig.run.length] = bytes(int(a) for a in answered)
            rig.run.retry(rig.run.unanswered())
            for off in late:
                rig.run.states[off] = 1  # a late answer: the retry pass skips it
        same_batches(bulk, each, data.draw(batch_sizes), now)


@PROPS
@given(syn_plans(max_hosts=16, max_ports=40), batch_sizes, st.floats(0, 1e6), st.data())
def test_a_resumed_keyed_pass_skips_what_is_answered(shared: Shared, plan: plans.Plan, sizes: list[int],
                                                     now: float, data: st.DataObject) -> None:
    length = plan.shard_range(0)[1]
    pos = data.draw(st.integers(0, length))
    answered = bytes(data.draw(st.lists(st.sampled_from([0, 0, 1, 2]), min_size=length, max_size=length)))
    with rigs(shared, plan, attempt=1, pos=pos) as (bulk, each):
        for rig in (bulk, each):
            assert rig.run.keyed
            rig.run.states[:length] = answered
        same_batches(bulk, each, sizes, now)


def test_only_plain_tcp_syn_to_a_sender_is_built_over_arrays(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plans.Plan(gen=1, kind=tcp_syn_kernel.PROBE.kind, slot=0, share=1, retries=0, key=b"k" * 16,
                      ifindex=1, src_ip=1, src_mac=b"\2" * 6, sport_base=61440, rate=1e3, timeout_init_ms=1000,
                      timeout_min_ms=100, timeout_max_ms=3000, shard_size=4, hosts=(2, 3), macs=(b"\4" * 6,) * 2,
                      ports=(1, 2), sport_lo=32768, sport_hi=60999)
    monkeypatch.setattr(tcp_syn_kernel.synshape, "shape", lambda mss: SCANNER_SHAPE)
    link = PairLink()
    with closing(link):
        assert PlanState(plan, link.transmitter(1, False)).bulk is None  # a subclass: its own frame()
        syn = dataclasses.replace(plan, kind=tcp_syn.PROBE.kind)
        assert PlanState(syn, link.transmitter(1, False)).bulk is not None
        assert PlanState(syn, send=None).bulk is None  # type: ignore[arg-type]  # not a Sender
