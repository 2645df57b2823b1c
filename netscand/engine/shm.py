"""The shared-memory region every process maps: worker table, plans, shard states and rings.

One anonymous mmap is made before any fork, so every child sees the same pages and nothing has
to be named, unlinked or tracked. Layout, in order:
  worker table   one row per worker: pid, generation, heartbeat, ready flag, counters, and
                 frames it dropped as malformed, by reason
  control row    the control process's pid, readiness, heartbeat, scan counts and reloads
  plans          PLAN_SLOTS plan slots the control process fills and the workers read
  shard slots    SHARD_SLOTS per worker: one state byte per probe of a shard in progress (a
                 different thing from a plan slot: a worker runs up to PLAN_SHARDS shards of
                 each plan slot's plan at once, each in a shard slot of its own)
  rings          per worker: jobs (control -> worker) and results (worker -> control)
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from typing import NamedTuple

from netscand.ipc.ring import Ring

PLAN_SLOTS = 4  # the cookie carries the plan slot in 2 bits
PLAN_BYTES = 1 << 20
# A worker sends every running plan at once, in turn; per plan it holds one shard being sent,
# the previous one waiting for late replies and retries, and the next one ready: with only two,
# a plan's sending paused at each pass's end until the previous shard's last retry had waited
# out its timeout and its slot came back through the control process (100-300 ms a shard).
PLAN_SHARDS = 3
SHARD_SLOTS = PLAN_SHARDS * PLAN_SLOTS
SHARD_MAX = 1 << 16
# Fields other processes read while their owner writes them use native formats, which CPython
# packs with one aligned memcpy per field instead of byte by byte (see ipc/ring.py).
SHARD_HEADER = struct.Struct("IIII")  # ShardHeader
SHARD_KEY = struct.Struct("II")  # the header's first two fields: plan generation and shard number
# After the header: the highest attempt (pass) of the shard the control process has recorded in
# the store (Shards.expire starts no retry pass above it, so a restart never repeats a pass),
# with the shard it is for: a slot freed and given to another shard between the control
# process's look at its header and its write must not hand that shard the grant. One word,
# written by one aligned memcpy: plan generation << 32 | shard << 8 | attempt (a plan has fewer
# than 2**24 shards: at most Plan.capacity hosts x 65535 ports in shards of SHARD_MAX, or one a
# worker when smaller; passes are 1 + retries <= 11).
SHARD_GRANT = struct.Struct("Q")
GRANT_AT = SHARD_HEADER.size
assert GRANT_AT % 8 == 0
SHARD_STATES = 64  # where a shard slot's state bytes start, after its header
SHARD_BYTES = SHARD_STATES + SHARD_MAX
JOB = struct.Struct("<BBBBIIII")  # Job
# A worker holds at most SHARD_SLOTS jobs; a restarted one may find as many of its
# predecessor's still queued beside the ones given again.
JOB_RING = 32
assert JOB_RING >= 2 * SHARD_SLOTS
RESULT = struct.Struct("<BBBBIIIHHII6sHB27s")  # 64 bytes; 27 fit any SYN-ACK's usual options
RESULT_RING = 1 << 16

# Worker table row: pid, generation, ready, heartbeat (monotonic), probes sent, replies matched,
# the rate its plans are paced at now and the loss its closed loops estimate; then, a cache line
# further, one counter per MALFORMED reason.
WORKER = struct.Struct("iIIxxxxdQQdd")
MALFORMED_AT = 64
WORKER_ROW = 128

# Why a received frame was dropped unread, as /metrics labels it (netscand_frames_malformed_total).
# The index is the reason's code; 0 is no reason (the frame is well formed).
MALFORMED = ("", "truncated", "bad_ip_header", "bad_tcp_header", "bad_icmp_quote", "bad_arp",
             "bad_checksum", "parser_error")
MALFORMED_COUNTS = struct.Struct(f"{len(MALFORMED)}Q")
assert WORKER.size <= MALFORMED_AT
assert MALFORMED_AT + MALFORMED_COUNTS.size <= WORKER_ROW

# Control row: what the supervisor needs from the control process (it has no store access and
# no event loop) for readiness, liveness, systemd's STATUS= and reloads.
ERROR_BYTES = 200
CONTROL = struct.Struct(f"iIIIId{ERROR_BYTES}s")
CONTROL_ROW = 256  # a multiple of 64 keeps every area after it cache-line aligned

JOB_SHARD = 1
JOB_GATED = 1  # Job.flags: the shard's retry passes wait for the control process's grant

# Result kinds
R_PORT = 1  # one port's state (open as it arrives; closed/filtered listed when few)
R_HOST = 2  # a host answered ARP: ip, mac
R_TALLY = 3  # per shard and host that answered: a=closed count, b=unanswered or ICMP-refused
R_DONE = 4  # shard finished: state=the plan's retries, opts=the shard's coverage counts (coverage.py)
R_REFUSED = 5  # the worker will not run this plan: a=REFUSE_* code, b=errno for REFUSE_INTERFACE
R_COVER = 6  # per shard and host that answered (as R_TALLY): ip, opts=the host's coverage counts
R_MARK = 7  # a shard's progress (a checkpoint): a=attempt, b=position in its pass, flags=MARK_*

# R_MARK flags
MARK_BASE = 1  # the pass goes in the shard's keyed order (its position names the same probes after a restart)
MARK_PASS_END = 2  # the pass is sent: its retry pass waits for a grant of attempt a + 1 (gated shards)

# Why a worker refused a plan (R_REFUSED's a): the dispatcher words it for the scan's error.
REFUSE_TARGET = 1  # a host outside policy.allowed_targets or inside policy.excluded_targets
REFUSE_RATE = 2  # a rate above policy.max_rate
REFUSE_PLAN = 3  # a plan slot that does not hold a well-formed plan
REFUSE_INTERFACE = 4  # no raw socket on the plan's interface

# Probe states, as stored in shard slots
S_NONE, S_OPEN, S_CLOSED, S_UNREACH, S_UP = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Result:
    kind: int
    state: int
    ttl: int
    flags: int
    plan_gen: int
    shard: int
    ip: int
    port: int
    win: int
    a: int
    b: int
    mac: bytes
    ipid: int
    opts: bytes

    @classmethod
    def unpack(cls, raw: bytes) -> "Result":
        (kind, state, ttl, flags, gen, shard, ip, port, win, a, b, mac, ipid, optlen,
         opts) = RESULT.unpack(raw)
        return cls(kind, state, ttl, flags, gen, shard, ip, port, win, a, b, mac, ipid,
                   opts[:optlen])


def pack_result(kind: int, *, state: int = 0, ttl: int = 0, flags: int = 0, plan_gen: int = 0,
                shard: int = 0, ip: int = 0, port: int = 0, win: int = 0, a: int = 0, b: int = 0,
                mac: bytes = b"", ipid: int = 0, opts: bytes = b"") -> bytes:
    opts = opts[:27]
    return RESULT.pack(kind, state, ttl, flags, plan_gen, shard, ip, port, win, a, b, mac,
                       ipid, len(opts), opts)


class WorkerRow(NamedTuple):
    pid: int
    generation: int  # lives of this worker index: a restart is one more
    ready: int
    heartbeat: float  # monotonic
    sent: int  # probes sent
    matched: int  # replies matched to a probe
    rate: float = 0.0  # probes/s: the sum of the pacers' rates of its plans with a pass to send (an adaptive plan's as its loop set it)
    loss: float = 0.0  # the highest loss the loops of those plans estimate (rate.py)


class Job(NamedTuple):
    """A job in a worker's ring: run shard `shard` of the plan in plan slot `plan_slot`, its
    first pass numbered `attempt`, from `pos` of the shard's keyed order (a resumed shard)."""

    kind: int  # JOB_SHARD
    plan_slot: int
    attempt: int
    flags: int  # JOB_GATED
    epoch: int  # the worker generation it is meant for
    gen: int  # the plan's generation
    shard: int
    pos: int = 0

    @classmethod
    def unpack(cls, raw: bytes) -> Job:
        return cls._make(JOB.unpack(raw))


class ShardHeader(NamedTuple):
    """The head of a shard slot: which shard of which plan its state bytes are, if any."""

    gen: int  # plan generation
    shard: int
    length: int  # probes, one state byte each
    active: int


def shard_header(shard_slot: memoryview) -> ShardHeader:
    """The header of a shard slot (one of Shared.shards)."""
    return ShardHeader._make(SHARD_HEADER.unpack_from(shard_slot, 0))


class ControlRow(NamedTuple):
    pid: int
    ready: int
    running: int  # scans running
    queued: int  # scans waiting for a slot
    reloads: int  # reloads done, counting each control process's boot as one
    heartbeat: float  # monotonic
    error: str  # why the last reload failed; empty when it worked


class Shared:
    """Views into the region; built once in the supervisor, inherited by every child."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        # Fanout group ids are per network namespace: a random base keeps two daemons apart.
        self.fanout_base = int.from_bytes(os.urandom(2), "big")
        job_size = Ring.size_for(JOB.size, JOB_RING)
        result_size = Ring.size_for(RESULT.size, RESULT_RING)
        sizes = (WORKER_ROW * workers, CONTROL_ROW, PLAN_BYTES * PLAN_SLOTS, SHARD_BYTES * SHARD_SLOTS * workers,
                 (job_size + result_size) * workers)
        self._map = mmap.mmap(-1, sum(sizes), flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self.table, self.control, plans, shards, rings = _cut(memoryview(self._map), sizes)
        self.plans = _split(plans, PLAN_BYTES)  # the plan slots
        self.shards = _split(shards, SHARD_BYTES)  # the shard slots, SHARD_SLOTS per worker in turn
        per_worker = _split(rings, job_size + result_size)
        self.jobs = [_ring(area[:job_size], JOB.size, JOB_RING) for area in per_worker]
        self.results = [_ring(area[job_size:], RESULT.size, RESULT_RING) for area in per_worker]

    def worker_row(self, index: int) -> WorkerRow:
        return WorkerRow._make(WORKER.unpack_from(self.table, index * WORKER_ROW))

    def set_worker_row(self, index: int, row: WorkerRow) -> None:
        WORKER.pack_into(self.table, index * WORKER_ROW, *row)

    def worker_ready(self, index: int) -> int:
        """The pid that reported ready in a worker's row, 0 while it has not."""
        row = self.worker_row(index)
        return row.pid if row.ready else 0

    def malformed(self, index: int) -> tuple[int, ...]:
        return MALFORMED_COUNTS.unpack_from(self.table, index * WORKER_ROW + MALFORMED_AT)

    def set_malformed(self, index: int, counts: list[int]) -> None:
        MALFORMED_COUNTS.pack_into(self.table, index * WORKER_ROW + MALFORMED_AT, *counts)

    def worker_slots(self, index: int) -> range:
        """The shard slots (indexes into `shards`) that belong to one worker."""
        return range(index * SHARD_SLOTS, (index + 1) * SHARD_SLOTS)

    def set_shard_header(self, shard_slot: int, header: ShardHeader) -> None:
        SHARD_HEADER.pack_into(self.shards[shard_slot], 0, *header)

    def grant(self, shard_slot: int, gen: int, shard: int) -> int:
        """The highest attempt of shard (gen, shard) that may be sent (SHARD_GRANT); -1 when
        the slot's grant is another shard's."""
        word = SHARD_GRANT.unpack_from(self.shards[shard_slot], GRANT_AT)[0]
        return word & 0xFF if word >> 8 == _grant_key(gen, shard) else -1

    def set_grant(self, shard_slot: int, gen: int, shard: int, attempt: int) -> None:
        SHARD_GRANT.pack_into(self.shards[shard_slot], GRANT_AT, _grant_key(gen, shard) << 8 | attempt)

    def control_row(self) -> ControlRow:
        pid, ready, running, queued, reloads, heartbeat, error = CONTROL.unpack_from(self.control)
        return ControlRow(pid, ready, running, queued, reloads, heartbeat,
                          error.rstrip(b"\0").decode(errors="replace"))

    def set_control_row(self, row: ControlRow) -> None:
        CONTROL.pack_into(self.control, 0, *row[:-1], row.error.encode()[:ERROR_BYTES])


def _cut(view: memoryview, sizes: tuple[int, ...]) -> list[memoryview]:
    """Consecutive areas of these sizes."""
    out, at = [], 0
    for size in sizes:
        out.append(view[at : at + size])
        at += size
    return out


def _split(view: memoryview, size: int) -> list[memoryview]:
    return [view[at : at + size] for at in range(0, len(view), size)]


def _ring(view: memoryview, item: int, capacity: int) -> Ring:
    return Ring(view, item, capacity, os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC))


def _grant_key(gen: int, shard: int) -> int:
    return gen << 24 | shard & 0xFFFFFF
