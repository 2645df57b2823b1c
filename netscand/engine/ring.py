"""A receive socket's PACKET_RX_RING, TPACKET_V3: the kernel writes replies into memory shared
with the worker, no syscall per frame.

With recv() a reply cost a system call and two Python calls around it; here the kernel fills
blocks of frames and hands a block over (its status word set to TP_STATUS_USER) when it is full
or RETIRE_MS after its first frame, and the worker reads all of a block's frames, then hands the
block back (TP_STATUS_KERNEL). select() on the socket wakes when a block is handed over, so the
worker loop waits on it as on any socket. A reply is seen at most RETIRE_MS late: its RTT reads
that much longer, under the send tick's own 4 ms unit and far under any timeout (plan.py).

The headers are the kernel's (linux/if_packet.h), but the frames in the blocks are the
network's, and the headers' offsets and counts are read as numbers that could be anything:
read_block() bounds every offset by the block and every walk by what the block can hold, frames
never overlapping, so a bad block costs at most its own bytes (it is total; a property test
feeds it random bytes). A block's frames are copied out in one piece (Frames), not one bytes
object each: the worker matches most of them in bulk (rstbatch.py).

x86 orders the kernel's frame writes before its status write as the worker sees them; a CPU
with weaker ordering would need a read barrier after reading the status, which Python has not.
"""

from __future__ import annotations

import mmap
import socket
import struct
from dataclasses import dataclass

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1

BLOCK_SIZE = 1 << 16  # a few hundred replies cut to SNAPLEN: one block read per worker turn
BLOCKS = 128  # 8 MiB: ~0.5 s of replies at 100,000/s, the backlog a busy worker may leave
FRAME_SIZE = 2048  # only the kernel's sanity check's unit: V3 packs frames by their length
RETIRE_MS = 2

_REQ3 = struct.Struct("=7I")  # struct tpacket_req3
# struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1's block_status,
# num_pkts, offset_to_first_pkt.
_BLOCK = struct.Struct("=8xIII")
_STATUS_AT = 8
_STATUS = struct.Struct("=I")
_BLOCK_HDR = 48  # the descriptor's size (blk_len, seq_num and two timestamps follow): frames come after
# struct tpacket3_hdr: tp_next_offset, (tp_sec, tp_nsec), tp_snaplen, (tp_len, tp_status), tp_mac.
_FRAME = struct.Struct("=I8xI8xH")
_FRAME_HDR = 48  # its size (tp_net, hv1 and padding follow tp_mac): no frame starts or steps closer


@dataclass(frozen=True, slots=True)
class Frames:
    """Frames side by side in one buffer, frame i at data[starts[i] : starts[i] + lengths[i]]: a
    block's, copied once, so that a bulk reader (rstbatch.py) reads them all as one array and
    only the frames it leaves are cut out as bytes."""

    data: bytes
    starts: list[int]
    lengths: list[int]

    @classmethod
    def of(cls, frames: list[bytes]) -> Frames:
        starts, at = [], 0
        for frame in frames:
            starts.append(at)
            at += len(frame)
        return cls(b"".join(frames), starts, [len(f) for f in frames])

    def frame(self, i: int) -> bytes:
        at = self.starts[i]
        return self.data[at : at + self.lengths[i]]

    def all(self) -> list[bytes]:
        return [self.frame(i) for i in range(len(self.starts))]


def read_block(ring: bytes | mmap.mmap, base: int, size: int, count: int, first: int) -> Frames:
    """The frames of the block at `base` (`size` bytes) whose header claims `count` frames
    from offset `first`: as many as are there, each within the block."""
    starts: list[int] = []
    lengths: list[int] = []
    at, end = first, size
    # Every frame takes a header: a count or a chain of offsets can claim no more than fit.
    for _ in range(min(count, size // _FRAME_HDR)):
        if at < _BLOCK_HDR or at + _FRAME_HDR > end:
            break
        step, snap, mac = _FRAME.unpack_from(ring, base + at)
        start = at + mac
        if mac < _FRAME_HDR or start + snap > end:
            break
        starts.append(start)
        lengths.append(snap)
        # 0: the block's last frame. A step into this frame's own bytes is no kernel's: frames
        # that overlapped could copy one block's bytes a thousand times over.
        if step < max(_FRAME_HDR, mac + snap):
            break
        at += step
    if not starts:
        return Frames(b"", [], [])
    # Frames follow each other (every step passes its frame's end): one copy from the first
    # frame's start to the last one's end holds them all, and no byte outside the block.
    lo, hi = starts[0], starts[-1] + lengths[-1]
    return Frames(ring[base + lo : base + hi], [s - lo for s in starts], lengths)


class Ring:
    """A receive socket with its ring mapped; frames() reads what the kernel has handed over."""

    def __init__(self, sock: socket.socket) -> None:
        """`sock`: an AF_PACKET socket not yet bound (the ring must be set up before)."""
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        req = _REQ3.pack(BLOCK_SIZE, BLOCKS, FRAME_SIZE, BLOCK_SIZE // FRAME_SIZE * BLOCKS, RETIRE_MS, 0, 0)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        self.sock = sock
        self._map = mmap.mmap(sock.fileno(), BLOCK_SIZE * BLOCKS, mmap.MAP_SHARED,
                              mmap.PROT_READ | mmap.PROT_WRITE)
        self._next = 0  # the kernel hands blocks over in order

    def fileno(self) -> int:
        return self.sock.fileno()

    def batches(self, limit: int) -> list[Frames]:
        """The frames of the blocks handed over, one Frames a block, whole blocks until at least
        `limit` frames are read; each block is handed back at once (its frames are a copy)."""
        ring, out, n = self._map, [], 0
        while n < limit:
            base = self._next * BLOCK_SIZE
            status, count, first = _BLOCK.unpack_from(ring, base)
            if not status & TP_STATUS_USER:
                break
            block = read_block(ring, base, BLOCK_SIZE, count, first)
            if block.starts:
                out.append(block)
                n += len(block.starts)
            _STATUS.pack_into(ring, base + _STATUS_AT, TP_STATUS_KERNEL)
            self._next = (self._next + 1) % BLOCKS
        return out

    def close(self) -> None:
        self._map.close()
        self.sock.close()
