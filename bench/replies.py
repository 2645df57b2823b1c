"""Micro-benchmark of a worker's receive path: Python microseconds per reply, per frame and in bulk.

    python bench/replies.py [--blocks 8,32,64,128,454] [--repeat 200]
    python bench/replies.py --smoke      # seconds

No lab and no sockets: ring blocks laid out as the kernel lays out TPACKET_V3 blocks, holding
the replies a full-range SYN scan gets (a host's RSTs for closed ports, and one SYN-ACK in
every 200 replies), to the probes of one plan (32 hosts x 65535 ports, shards of 65536) whose
shards' state bytes are fresh for each run. Each block is read and recorded two ways: one frame
at a time (ring.read_block's frames, Replies.take each: the path before the bulk one) and in
bulk (Replies.take_batch: rstbatch.py, the rest per frame). A full block holds 454 replies; at
the default rate a worker's block is handed over at its 2 ms retirement, holding fewer.

Prints per block size the microseconds per reply of both paths and their ratio. Exit status 0.
"""

from __future__ import annotations

import argparse
import struct
import time
from collections.abc import Callable

from netscand.engine import plan as plans
from netscand.engine import ring
from netscand.engine.probes import tcp_syn
from netscand.engine.replies import Replies
from netscand.engine.shards import PlanState, ShardFinder
from netscand.engine.shm import MALFORMED, SHARD_BYTES, SHARD_HEADER, SHARD_STATES
from netscand.lab.harness import parse_bench_args

SRC_MAC, HOST_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000010")
SRC_IP = 0xC6120001
HOSTS = tuple(0xC612000A + i for i in range(32))
BLOCK = ring.BLOCK_SIZE
MAC = 82  # where a frame starts after its tpacket3_hdr, as the kernel places it (Ethernet)
OPEN_EVERY = 200
SMOKE = {"blocks": "32,454", "repeat": 5}


def make_plan() -> plans.Plan:
    return plans.Plan(gen=5, kind=tcp_syn.PROBE.kind, slot=1, share=1, retries=1, key=b"k" * 16, ifindex=2,
                      src_ip=SRC_IP, src_mac=SRC_MAC, sport_base=61440 + (1 << 10), rate=100000.0,
                      timeout_init_ms=1000, timeout_min_ms=100, timeout_max_ms=3000, shard_size=1 << 16,
                      hosts=HOSTS, macs=(HOST_MAC,) * len(HOSTS), ports=tuple(range(1, 65536)))


def answer(probe: bytes, flags: int) -> bytes:
    """A host's reply to one SYN: a 40-byte IPv4/TCP packet, padded to Ethernet's 60 bytes."""
    dst, sport, dport, seq = struct.unpack_from("!IHHI", probe, 30)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, dst.to_bytes(4, "big"),
                               SRC_IP.to_bytes(4, "big")))
    ip[10:12] = _sum(bytes(ip)).to_bytes(2, "big")
    tcp = bytearray(struct.pack("!HHIIBBHHH", dport, sport, 0, (seq + 1) & 0xFFFFFFFF, 0x50, flags, 0, 0, 0))
    tcp[16:18] = _sum(bytes(ip[12:20]) + b"\0\x06\0\x14" + bytes(tcp)).to_bytes(2, "big")
    return SRC_MAC + HOST_MAC + b"\x08\x00" + bytes(ip) + bytes(tcp) + bytes(6)


def _sum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total & 0xFFFF) + (total >> 16)
    return ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF


def block_of(frames: list[bytes]) -> bytes:
    """A block as the kernel hands one over: descriptor, then each frame after its header."""
    buf, at = bytearray(BLOCK), 48
    for i, frame in enumerate(frames):
        step = (MAC + len(frame) + 15) & ~15
        struct.pack_into("=IIIIIIH", buf, at, 0 if i == len(frames) - 1 else step, 0, 0, len(frame), len(frame), 1, MAC)
        buf[at + MAC : at + MAC + len(frame)] = frame
        at += step
    struct.pack_into("=III", buf, 8, ring.TP_STATUS_USER, len(frames), 48)
    return bytes(buf)


def run(size: int, repeat: int) -> tuple[float, float]:
    """Microseconds per reply, per frame and in bulk, over `repeat` blocks of `size` replies."""
    plan = make_plan()
    ps = PlanState(plan, send=None)  # type: ignore[arg-type]  # nothing is sent
    nh = len(plan.hosts)
    first = plan.shard_size - size // 2  # the window straddles two shards, as a pass's end does
    frames = []
    for k in range(size):
        port, host = divmod(first + k, nh)
        probe = bytes(ps.probe.frame(host, port, 100 + k))
        frames.append(answer(probe, 0x12 if k % OPEN_EVERY == OPEN_EVERY - 1 else 0x14))
    block = block_of(frames)
    assert len(ring.read_block(block, 0, BLOCK, size, 48).starts) == size, "the block does not hold them"
    slots = [bytearray(SHARD_BYTES) for _ in range(2)]
    for shard, slot in enumerate(slots):
        SHARD_HEADER.pack_into(slot, 0, plan.gen, shard, plan.shard_size, 1)
    replies = Replies(0, ShardFinder([memoryview(s) for s in slots]), lambda record: None, [0] * len(MALFORMED), 0)
    clean = bytes(SHARD_BYTES - SHARD_STATES)

    def timed(take: Callable[[], None]) -> float:
        for slot in slots:
            slot[SHARD_STATES:] = clean  # every probe unanswered, as when its replies come
        began = time.perf_counter()
        take()
        return time.perf_counter() - began

    def one_by_one() -> None:
        for frame in ring.read_block(block, 0, BLOCK, size, 48).all():
            replies.take(frame, [ps])

    def in_bulk() -> None:
        replies.take_batch(ring.read_block(block, 0, BLOCK, size, 48), [ps])

    timed(one_by_one), timed(in_bulk)  # warm-up: the bulk matcher builds the plan's tables
    per_frame = sum(timed(one_by_one) for _ in range(repeat))
    bulk = sum(timed(in_bulk) for _ in range(repeat))
    assert replies.matched == 2 * (repeat + 1) * size, "a reply went unmatched"
    return per_frame / repeat / size * 1e6, bulk / repeat / size * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", default="8,32,64,128,454", help="replies per block, comma-separated")
    parser.add_argument("--repeat", type=int, default=200, help="blocks read per size and path")
    args = parse_bench_args(parser, SMOKE)
    print(f"{'replies/block':>13} {'per frame us/reply':>19} {'bulk us/reply':>14} {'ratio':>6}")
    for size in (int(s) for s in args.blocks.split(",")):
        one, bulk = run(size, args.repeat)
        print(f"{size:>13} {one:>19.2f} {bulk:>14.2f} {one / bulk:>5.1f}x")


if __name__ == "__main__":
    main()
