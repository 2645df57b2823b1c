"""The bulk path for plain RSTs (engine/rstbatch.py, Replies.take_batch) against the per-frame
path (Replies.take, one frame at a time): on any mix of frames, valid RSTs and SYN-ACKs to the
plans' probes, unreachables, RSTs with a wrong cookie or checksum or to a host of no plan, frames
cut short or with a byte overwritten, and arbitrary bytes, both leave the same state bytes, emit
the same records and count the same matched and malformed frames. The plans are tcp_syn ones in
either layout, with repeated hosts and ports, beside a tcp_ack plan that a forged RST answers too,
and their shards are running, done or never there."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netscand.engine import frames
from netscand.engine import plan as plans
from netscand.engine.checksum import checksum, ones_sum
from netscand.engine.probes import tcp_ack, tcp_syn
from netscand.engine.replies import Replies
from netscand.engine.ring import Frames
from netscand.engine.rstbatch import LEAST, Hits, RstBatch
from netscand.engine.shards import PlanState, ShardFinder
from netscand.engine.shm import MALFORMED, S_CLOSED, S_NONE, S_OPEN, S_UNREACH, SHARD_HEADER, SHARD_STATES

SRC_MAC, HOST_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000010")
SRC_IP = 0xC6120001
POOL = (0xC6120010, 0xC6120011, 0xC6120012, 0xC6120013)  # the plans' hosts are drawn from it
FOREIGN = 0xC6120063  # in no plan
PORT_POOL = (22, 80, 443, 8080, 65535)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_plan(kind: int, slot: int, gen: int, hosts: tuple[int, ...], ports: tuple[int, ...],
              shard_size: int, paced: bool) -> plans.Plan:
    return plans.Plan(gen=gen, kind=kind, slot=slot, share=1, retries=1, key=bytes([gen]) * 16, ifindex=2,
                      src_ip=SRC_IP, src_mac=SRC_MAC, sport_base=61440 + (slot << 10), rate=100.0,
                      timeout_init_ms=1000, timeout_min_ms=100, timeout_max_ms=3000,
                      shard_size=len(ports) * shard_size if paced else shard_size, hosts=hosts,
                      macs=(HOST_MAC,) * len(hosts), ports=ports, gap_ms=10 if paced else 0)


@dataclass
class World:
    """Plans, their shards' state bytes (running ones, found by a ShardFinder), and what one
    path made of some frames."""

    states: list[PlanState]
    slots: list[bytearray]

    def copy(self) -> World:
        return World(self.states, [bytearray(s) for s in self.slots])

    def replies(self) -> tuple[Replies, list[bytes]]:
        emitted: list[bytes] = []
        finder = ShardFinder([memoryview(s) for s in self.slots])
        return Replies(0, finder, emitted.append, [0] * len(MALFORMED), 0), emitted


@st.composite
def worlds(draw: st.DrawFn, kinds: list[str] | None = None, pool: int = len(POOL)) -> World:
    """Plans of `kinds` (any, if None), their hosts and ports drawn from the pools' first `pool`."""
    states, slots = [], []
    if kinds is None:
        kinds = draw(st.lists(st.sampled_from(["syn", "syn", "ack"]), min_size=1, max_size=3))
    for k, kind in enumerate(kinds):
        # Repeats: the probe's dicts keep a repeated address's or port's last index.
        hosts = tuple(draw(st.lists(st.sampled_from(POOL[:pool]), min_size=1, max_size=4)))
        ports = tuple(draw(st.lists(st.sampled_from(PORT_POOL[:pool]), min_size=1, max_size=4)))
        plan = make_plan(tcp_syn.PROBE.kind if kind == "syn" else tcp_ack.PROBE.kind, k, 10 + k, hosts, ports,
                         draw(st.integers(1, 5)), draw(st.booleans()))
        states.append(PlanState(plan, send=None))  # type: ignore[arg-type]  # nothing is sent
        for shard in range(plan.shards):
            if draw(st.integers(0, 3)) == 0:
                continue  # done, or never started: no states
            length = plan.shard_range(shard)[1] - plan.shard_range(shard)[0]
            slot = bytearray(SHARD_STATES + length)
            SHARD_HEADER.pack_into(slot, 0, plan.gen, shard, length, 1)
            slot[SHARD_STATES:] = bytes(draw(st.lists(st.sampled_from([S_NONE, S_NONE, S_OPEN, S_CLOSED, S_UNREACH]),
                                                      min_size=length, max_size=length)))
            slots.append(slot)
    return World(states, slots)


def reply(probe: bytes, flags: int, *, src: int | None = None, ack_delta: int = 1, seq: int = 0,
          offload: bool = False, opts: bytes = b"", payload: bytes = b"", pad: int = 6) -> bytes:
    """A host's TCP answer to one of our SYNs (or ACKs: the cookie in its ack field, then)."""
    _, dst, sport, dport, pseq, pack = struct.unpack_from("!4sIHHII", probe, 26)
    cookie = pseq or pack
    src = dst if src is None else src
    tcp_len = 20 + len(opts) + len(payload)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + tcp_len, 7, 0x4000, 61, 6, 0,
                               src.to_bytes(4, "big"), SRC_IP.to_bytes(4, "big")))
    ip[10:12] = checksum(bytes(ip)).to_bytes(2, "big")
    tcp = bytearray(struct.pack("!HHIIBBHHH", dport, sport, seq, (cookie + ack_delta) & 0xFFFFFFFF,
                                (20 + len(opts)) // 4 << 4, flags, 29200, 0, 0) + opts + payload)
    pseudo = bytes(ip[12:20]) + b"\0\x06" + tcp_len.to_bytes(2, "big")
    if offload:  # the field holding the pseudo-header's sum, as a sender with tx offload leaves it
        total = ones_sum(pseudo)
        tcp[16:18] = ((total & 0xFFFF) + (total >> 16)).to_bytes(2, "big")
    else:
        tcp[16:18] = checksum(pseudo + bytes(tcp)).to_bytes(2, "big")
    return SRC_MAC + HOST_MAC + b"\x08\x00" + bytes(ip) + bytes(tcp) + b"\0" * pad


def unreachable(probe: bytes) -> bytes:
    quote = probe[14:14 + 28]
    icmp = bytearray(b"\x03\x03\0\0\0\0\0\0" + quote)
    icmp[2:4] = checksum(bytes(icmp)).to_bytes(2, "big")
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 61, 1, 0,
                               probe[30:34], SRC_IP.to_bytes(4, "big")))
    ip[10:12] = checksum(bytes(ip)).to_bytes(2, "big")
    return SRC_MAC + HOST_MAC + b"\x08\x00" + bytes(ip) + bytes(icmp)


@st.composite
def frame_for(draw: st.DrawFn, world: World) -> bytes:
    """One frame a worker of this world might receive."""
    kind = draw(st.sampled_from(["rst", "rst", "rst", "rst", "synack", "icmp", "forged", "junk"]))
    if kind == "junk":
        return draw(st.binary(max_size=120))
    ps = draw(st.sampled_from(world.states))
    p = ps.plan
    host, port = draw(st.integers(0, len(p.hosts) - 1)), draw(st.integers(0, len(p.ports) - 1))
    probe = bytes(ps.probe.frame(host, port, draw(st.integers(0, 2000))))
    if kind == "icmp":
        frame = unreachable(probe)
    elif kind == "synack":
        frame = reply(probe, 0x12, opts=b"\x02\x04\x05\xb4")
    elif kind == "forged":
        # A RST acknowledging this probe's cookie + 1, as a tcp_syn plan's answer does, with
        # another plan's cookie for the same probe in its sequence number, as a tcp_ack plan's
        # does: both may take it, and the plans' order says which (frames.take's first).
        other = draw(st.sampled_from(world.states))
        ip, sport, dport = struct.unpack_from("!IHH", probe, 30)
        index = {h: i for i, h in enumerate(other.plan.hosts)}.get(ip, 0)
        frame = reply(probe, 0x14, seq=other.probe.cookies(index, dport, sport))
    else:
        frame = reply(probe, draw(st.sampled_from([0x04, 0x14, 0x14, 0x06, 0x16, 0x1C])),
                      src=draw(st.sampled_from([None, None, None, None, FOREIGN])),
                      ack_delta=draw(st.sampled_from([1, 1, 1, 1, 0, 1 + 4])),
                      offload=draw(st.booleans()),
                      opts=draw(st.sampled_from([b"", b"", b"", b"\x01\x01\x01\x00"])),
                      payload=draw(st.sampled_from([b"", b"", b"", b"xy"])),
                      pad=draw(st.sampled_from([0, 6, 6])))
    mangle = draw(st.integers(0, 6))
    if mangle == 1:  # a byte overwritten anywhere: checksums, lengths, flags, addresses
        at = draw(st.integers(0, len(frame) - 1))
        frame = frame[:at] + bytes([draw(st.integers(0, 255))]) + frame[at + 1:]
    elif mangle == 2:  # cut short
        frame = frame[:draw(st.integers(0, len(frame)))]
    elif mangle == 3 and len(frame) >= 54:  # a header byte overwritten, its checksums made to add up
        # Most often a field the shape is read from: version and header length, total length,
        # protocol, data offset, flags.
        at = draw(st.one_of(st.sampled_from([14, 16, 17, 23, 46, 47]), st.integers(14, 53)))
        frame = resum(frame[:at] + bytes([draw(st.integers(0, 255))]) + frame[at + 1:])
    return frame


def resum(frame: bytes) -> bytes:
    """The IPv4 header's checksum, and the TCP one of a 20-byte segment, made right for what the
    first 54 bytes say: a frame whose lengths or offsets lie passes both."""
    out = bytearray(frame)
    out[24:26] = b"\0\0"
    out[24:26] = checksum(bytes(out[14:34])).to_bytes(2, "big")
    out[50:52] = b"\0\0"
    out[50:52] = checksum(bytes(out[26:34]) + b"\0\x06\0\x14" + bytes(out[34:54])).to_bytes(2, "big")
    return bytes(out)


@st.composite
def cases(draw: st.DrawFn, world: st.SearchStrategy[World] | None = None) -> tuple[World, list[bytes], list[int]]:
    """A world (any, if None) and frames for it, cut into batches at the list's positions."""
    world = draw(worlds() if world is None else world)
    batch = draw(st.lists(frame_for(world), min_size=1, max_size=40))
    # Some frames twice: a port answered by both a RST and a SYN-ACK, the same RST again.
    if batch and draw(st.booleans()):
        batch += draw(st.lists(st.sampled_from(batch), max_size=10))
        batch = draw(st.permutations(batch))
    cuts = sorted(draw(st.lists(st.integers(0, len(batch)), max_size=3)))
    return world, batch, cuts


def per_frame(world: World, batch: list[bytes]) -> tuple[list[bytearray], list[bytes], int, list[int]]:
    w = world.copy()
    replies, emitted = w.replies()
    for frame in batch:
        replies.take(frame, w.states)
    return w.slots, emitted, replies.matched, replies.malformed


def in_bulk(world: World, batch: list[bytes], cuts: list[int], least: int = 1) -> tuple[list[bytearray], list[bytes], int, list[int]]:
    """What take_batch makes of the frames, cut into batches at `cuts`, each matched in bulk
    from `least` frames (the default's LEAST would leave most of these batches per frame)."""
    w = world.copy()
    replies, emitted = w.replies()
    replies.rsts = RstBatch(least)
    for lo, hi in zip([0, *cuts], [*cuts, len(batch)], strict=True):
        replies.take_batch(Frames.of(batch[lo:hi]), w.states)
    return w.slots, emitted, replies.matched, replies.malformed


@FUZZ
@given(cases())
def test_the_bulk_path_leaves_what_the_per_frame_path_leaves(case: tuple[World, list[bytes], list[int]]) -> None:
    world, batch, cuts = case
    assert in_bulk(world, batch, cuts) == per_frame(world, batch)
    assert in_bulk(world, batch, cuts, LEAST) == per_frame(world, batch)


@FUZZ
@given(cases(worlds(["ack", "syn"], pool=2)))
def test_a_rst_two_plans_answer_goes_to_the_first_as_per_frame(case: tuple[World, list[bytes], list[int]]) -> None:
    """A tcp_ack plan before a tcp_syn plan, probing the same few targets: a forged RST that
    answers both is the tcp_ack plan's, in bulk as per frame."""
    world, batch, cuts = case
    assert in_bulk(world, batch, cuts) == per_frame(world, batch)


@FUZZ
@given(worlds(["syn"]), st.data())
def test_a_rst_whose_shape_lies_under_good_checksums_reads_the_same(world: World, data: st.DataObject) -> None:
    """One field the shape is read from overwritten, the checksums made to add up again: only
    the shape's own checks can tell such a frame from a plain RST."""
    ps = world.states[0]
    host, port = data.draw(st.integers(0, len(ps.plan.hosts) - 1)), data.draw(st.integers(0, len(ps.plan.ports) - 1))
    frame = reply(bytes(ps.probe.frame(host, port, 9)), 0x14, pad=data.draw(st.sampled_from([0, 6])))
    at = data.draw(st.sampled_from([12, 13, 14, 16, 17, 23, 46, 47]))
    # Besides any byte: IPv4 of any header length, and any version with a 20-byte header.
    value = data.draw(st.one_of(st.integers(0, 255), st.integers(0x40, 0x4F), st.integers(0, 15).map(lambda v: v << 4 | 5)))
    frame = resum(frame[:at] + bytes([value]) + frame[at + 1:])
    assert in_bulk(world, [frame], []) == per_frame(world, [frame])


@FUZZ
@given(worlds(), st.lists(st.binary(max_size=80), max_size=30))
def test_arbitrary_bytes_read_the_same_and_never_raise(world: World, batch: list[bytes]) -> None:
    got = in_bulk(world, batch, [])
    assert got == per_frame(world, batch)
    assert got[3][frames.PARSER_ERROR] == 0


@FUZZ
@given(worlds(), st.binary(max_size=600), st.lists(st.tuples(st.integers(0, 700), st.integers(0, 700)), max_size=20))
def test_any_frames_layout_is_read_within_its_buffer(world: World, data: bytes, spans: list[tuple[int, int]]) -> None:
    """Frames whose offsets a ring walk bounded (within the copy): the bulk reader reads no byte
    outside it, whatever the spans (overlapping, empty, past the end: rejected, not read)."""
    spans = [(s, n) for s, n in spans if s + n <= len(data)]
    batch = Frames(data, [s for s, _ in spans], [n for _, n in spans])
    hits, rest = RstBatch(1).match(batch, world.states)
    assert sorted([*rest, *(i for h in hits for i in h.at.tolist())]) == list(range(len(spans)))


@dataclass
class Samples:
    taken: list[float]

    def sample(self, rtt: float) -> None:
        self.taken.append(rtt)


def one_running_plan() -> tuple[PlanState, World]:
    """A tcp_syn plan over the pools with every shard running (its state bytes blank)."""
    plan = make_plan(tcp_syn.PROBE.kind, 1, 7, POOL, PORT_POOL, 20, False)
    ps = PlanState(plan, send=None)  # type: ignore[arg-type]
    world = World([ps], [])
    for shard in range(plan.shards):
        slot = bytearray(SHARD_STATES + plan.shard_size)
        SHARD_HEADER.pack_into(slot, 0, plan.gen, shard, plan.shard_size, 1)
        world.slots.append(slot)
    return ps, world


def closed_everywhere(world: World) -> bool:
    states = np.concatenate([np.frombuffer(s, np.uint8)[SHARD_STATES:] for s in world.slots])
    return bool((states == S_CLOSED).all())


def test_a_block_of_rsts_is_matched_in_bulk_and_timed_once() -> None:
    """Every RST of a block matched without the per-frame path; one RTT sample for the plan."""
    ps, world = one_running_plan()
    # Summed by the sender, or left to an offload that never came (a veth's, lo's).
    batch = [reply(bytes(ps.probe.frame(h, p, 3)), 0x14, offload=bool(p & 1), pad=6 * (h & 1))
             for h in range(len(POOL)) for p in range(len(PORT_POOL))]
    hits, rest = RstBatch().match(Frames.of(batch), [ps])
    assert rest == [] and [len(h.at) for h in hits] == [len(batch)]
    replies, emitted = world.replies()
    samples: list[float] = []
    ps.rtt = Samples(samples)  # type: ignore[assignment]
    replies.take_batch(Frames.of(batch), [ps])
    assert replies.matched == len(batch) and emitted == [] and len(samples) == 1
    assert closed_everywhere(world)


def test_a_batch_of_few_frames_goes_per_frame() -> None:
    """Under LEAST frames the per-frame path costs less than the bulk one's fixed cost."""
    plan = make_plan(tcp_syn.PROBE.kind, 1, 7, POOL, PORT_POOL, 20, False)
    ps = PlanState(plan, send=None)  # type: ignore[arg-type]
    batch = Frames.of([reply(bytes(ps.probe.frame(0, p, 3)), 0x14) for p in range(3)])
    assert RstBatch().match(batch, [ps]) == ([], [0, 1, 2])
    hits, rest = RstBatch(3).match(batch, [ps])
    assert rest == [] and hits[0].at.tolist() == [0, 1, 2]


class Failing(RstBatch):
    """A bulk matcher that breaks on whatever it is given: the worker must outlive it."""

    def match(self, batch: Frames, plans: Sequence[PlanState]) -> tuple[list[Hits], list[int]]:
        raise MemoryError("the bulk matcher broke")


def test_a_bulk_matcher_that_breaks_leaves_its_block_to_the_per_frame_path() -> None:
    ps, world = one_running_plan()
    batch = [reply(bytes(ps.probe.frame(h, p, 3)), 0x14) for h in range(len(POOL)) for p in range(len(PORT_POOL))]
    replies, _ = world.replies()
    replies.rsts = Failing()
    replies.take_batch(Frames.of(batch), [ps])  # no exception escapes: a worker would have died of it
    assert replies.matched == len(batch) and replies.malformed[frames.PARSER_ERROR] == 1
    assert closed_everywhere(world)
