"""A plan: what one group of shards probes, written by the control process into a plan slot.

Hosts and ports are flattened into one index space, port-major (L = port_index * hosts +
host_index), so that any contiguous shard touches every host a little instead of one host a lot,
and a reply maps back to its shard offset with two dict lookups and no inverse permutation.
"""

from __future__ import annotations

import struct
from collections.abc import Container
from dataclasses import dataclass

from netscand.engine.clock import TICK_BITS, TICK_MASK, WRAP_MS
from netscand.engine.shm import PLAN_BYTES, PLAN_SLOTS, SHARD_MAX

HEADER = struct.Struct("<IBBBB16sII6sHdIIIIIII")
# The generation (first field) is also read and written alone, natively: one aligned 4-byte
# store, never seen half written by a worker (see ipc/ring.py).
_GEN = struct.Struct("I")
HEADER_BYTES = 128
assert HEADER.size <= HEADER_BYTES

FLAG_LOOPBACK = 1  # send at the IP layer: Linux drops 127/8 frames injected below it as martians

# The adaptive reply timeout (measured RTT, within these bounds) unless a scan fixes one.
TIMEOUT_INIT_MS, TIMEOUT_MIN_MS, TIMEOUT_MAX_MS = 1000, 100, 3000
# RTTs are read from the send tick echoed in replies, which wraps: past it, a slow reply would
# pass for a fast one and shrink the timeout (clock.py).
assert TIMEOUT_MAX_MS < WRAP_MS


class PlanError(Exception):
    """A slot whose header does not describe a plan a worker can run (sizes, kind, slot)."""


@dataclass(frozen=True)
class Plan:
    gen: int  # unique per plan over the life of the shared region; 0 marks a free slot
    kind: int
    slot: int
    share: int  # how many workers split it: each paces at rate / share
    retries: int
    key: bytes
    ifindex: int
    src_ip: int
    src_mac: bytes
    sport_base: int
    rate: float
    timeout_init_ms: int
    timeout_min_ms: int
    timeout_max_ms: int
    shard_size: int
    hosts: tuple[int, ...]
    macs: tuple[bytes, ...]  # destination MAC per host: its own on-link, the gateway's if routed
    ports: tuple[int, ...]
    flags: int = 0

    @property
    def source_ports(self) -> tuple[int, int]:
        """The source ports its probes use, first and last: the low bits carry the send tick,
        the bits above them its plan slot (sport_base = base + (slot << TICK_BITS)), so that a
        reply no cookie comes back in (UDP's SSDP, TFTP, the empty datagram) still names its
        plan by the port it comes to."""
        return self.sport_base, self.sport_base + TICK_MASK

    @property
    def every_slot_ports(self) -> tuple[int, int]:
        """The source ports of every plan slot's plans, first and last: the range the receive
        filter takes, built once per interface whichever plan opens it."""
        lo = self.sport_base - (self.slot << TICK_BITS)
        return lo, lo + (PLAN_SLOTS << TICK_BITS) - 1

    @property
    def size(self) -> int:
        return len(self.hosts) * len(self.ports)

    @property
    def shards(self) -> int:
        return -(-self.size // self.shard_size)

    def shard_range(self, shard: int) -> tuple[int, int]:
        start = shard * self.shard_size
        return start, min(start + self.shard_size, self.size)

    @staticmethod
    def capacity(nports: int) -> int:
        """How many hosts fit in one plan slot with this many ports."""
        return (PLAN_BYTES - HEADER_BYTES - 2 * nports) // 10


def write(buf: memoryview, plan: Plan) -> None:
    """Fill a slot; the generation goes in last so a reader never sees half a plan."""
    nh, np_ = len(plan.hosts), len(plan.ports)
    if nh > Plan.capacity(np_):
        raise ValueError("plan does not fit its slot")
    _GEN.pack_into(buf, 0, 0)
    at = HEADER_BYTES
    struct.pack_into(f"<{nh}I", buf, at, *plan.hosts)
    at += 4 * nh
    buf[at : at + 6 * nh] = b"".join(plan.macs)
    at += 6 * nh
    struct.pack_into(f"<{np_}H", buf, at, *plan.ports)
    HEADER.pack_into(buf, 0, 0, plan.kind, plan.slot, plan.share, plan.retries, plan.key,
                     plan.ifindex, plan.src_ip, plan.src_mac, plan.sport_base, plan.rate,
                     plan.timeout_init_ms, plan.timeout_min_ms, plan.timeout_max_ms,
                     plan.shard_size, nh, np_, plan.flags)
    _GEN.pack_into(buf, 0, plan.gen)


def generation(buf: memoryview) -> int:
    return _GEN.unpack_from(buf, 0)[0]


def release(buf: memoryview) -> None:
    """Free a slot: workers drop shards of it at their next check."""
    _GEN.pack_into(buf, 0, 0)


def read(buf: memoryview, slot_index: int, kinds: Container[int]) -> Plan | None:
    """The plan in slot `slot_index`; None when there is none. The control process writes the
    slot but is not trusted with the worker's life: a header that does not add up (sizes past
    the slot, a kind not in `kinds`, another slot's number, an adaptive timeout the send tick
    cannot time) raises PlanError."""
    (gen, kind, slot, share, retries, key, ifindex, src_ip, src_mac, sport_base, rate, t_init,
     t_min, t_max, shard_size, nh, np_, flags) = HEADER.unpack_from(buf, 0)
    if gen == 0:
        return None
    if (kind not in kinds or slot != slot_index or slot >= PLAN_SLOTS or not nh or not np_
            or nh > Plan.capacity(np_) or not 0 < shard_size <= SHARD_MAX
            or not slot << TICK_BITS <= sport_base <= 0x10000 - ((PLAN_SLOTS - slot) << TICK_BITS) or (t_min < t_max and t_max >= WRAP_MS)):
        raise PlanError(f"slot {slot_index}: kind {kind}, slot {slot}, {nh} hosts, {np_} ports, "
                        f"shards of {shard_size}, source ports from {sport_base}, "
                        f"timeout {t_min}-{t_max} ms")
    at = HEADER_BYTES
    hosts = struct.unpack_from(f"<{nh}I", buf, at)
    at += 4 * nh
    raw = bytes(buf[at : at + 6 * nh])
    macs = tuple(raw[i : i + 6] for i in range(0, 6 * nh, 6))
    at += 6 * nh
    ports = struct.unpack_from(f"<{np_}H", buf, at)
    plan = Plan(gen, kind, slot, share, retries, key, ifindex, src_ip, src_mac, sport_base, rate,
                t_init, t_min, t_max, shard_size, hosts, macs, ports, flags)
    # The slot may have been released and refilled while we copied it.
    return plan if generation(buf) == gen else None
