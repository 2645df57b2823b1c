"""The receive ring's block reader (engine/ring.py): it reads back a block laid out as the
kernel lays one out, and is total over any block bytes (test_ring_lab.py: a real ring)."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from netscand.engine import ring

BLOCK = 4096


def block_of(frames: list[bytes], size: int = BLOCK) -> tuple[bytes, int]:
    """A block laid out as the kernel lays one out: descriptor, then a header per frame at
    aligned offsets, each frame after its header; and its frame count."""
    buf = bytearray(size)
    at = 48
    for i, frame in enumerate(frames):
        mac = 82
        step = (mac + len(frame) + 15) & ~15
        nxt = 0 if i == len(frames) - 1 else step
        struct.pack_into("=IIIIIIH", buf, at, nxt, 0, 0, len(frame), len(frame), 1, mac)
        buf[at + mac : at + mac + len(frame)] = frame
        at += step
    struct.pack_into("=III", buf, 8, ring.TP_STATUS_USER, len(frames), 48)
    return bytes(buf), len(frames)


def test_a_kernel_laid_block_reads_back_its_frames() -> None:
    frames = [bytes([i]) * (60 + i) for i in range(20)]
    buf, n = block_of(frames)
    assert ring.read_block(buf, 0, BLOCK, n, 48).all() == frames
    # The same block seen further into a mapping.
    assert ring.read_block(b"\0" * 512 + buf, 512, BLOCK, n, 48).all() == frames


def test_frames_side_by_side_read_back_each() -> None:
    frames = [b"", b"a", b"bc" * 40, b"d"]
    assert ring.Frames.of(frames).all() == frames
    assert ring.Frames.of([]).all() == []


@settings(max_examples=500)
@given(st.binary(min_size=BLOCK, max_size=BLOCK), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_any_block_bytes_read_without_error_and_within_the_block(data: bytes, count: int, first: int) -> None:
    block = ring.read_block(data, 0, BLOCK, count, first)
    out = block.all()
    assert len(out) <= BLOCK // 48
    assert len(block.data) <= BLOCK  # one copy, of the block's bytes only
    # Frames never overlap, and each lies within the copy.
    ends = [s + n for s, n in zip(block.starts, block.lengths, strict=True)]
    assert all(0 <= s and e <= len(block.data) for s, e in zip(block.starts, ends, strict=True))
    assert all(e <= s for e, s in zip(ends, block.starts[1:], strict=False))
    assert all(f in data for f in out)


def test_frames_that_claim_to_overlap_are_read_once() -> None:
    # A header that steps into its own frame's bytes: the walk stops there, the block's bytes
    # are not copied once per 48-byte step.
    buf = bytearray(BLOCK)
    for at in range(48, BLOCK - 48, 48):
        struct.pack_into("=IIIIIIH", buf, at, 48, 0, 0, 2000, 2000, 1, 48)
    assert len(ring.read_block(bytes(buf), 0, BLOCK, 1000, 48).starts) == 1


@settings(max_examples=200)
@given(st.lists(st.binary(min_size=14, max_size=256), max_size=12), st.integers(0, BLOCK - 1), st.integers(0, 2**32 - 1))
def test_a_damaged_header_costs_only_frames_of_its_block(frames: list[bytes], at: int, value: int) -> None:
    buf, n = block_of(frames)
    damaged = bytearray(buf)
    struct.pack_into("=I", damaged, min(at, BLOCK - 4), value)
    out = ring.read_block(bytes(damaged), 0, BLOCK, n, 48)
    assert len(out.starts) <= BLOCK // 48 and len(out.data) <= BLOCK
