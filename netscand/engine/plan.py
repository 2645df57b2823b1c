"""A plan: what one group of shards probes, written by the control process into a plan slot.

Hosts and ports are flattened into one index space. An unpaced plan is port-major (L =
port_index * hosts + host_index), so that any contiguous shard touches every host a little
instead of one host a lot. A paced plan (gap_ms > 0) is host-major (L = host_index * ports +
port_index) with shards of whole hosts, so one worker owns each host's gap (paced.py). Either
way a reply maps back to its shard offset with two dict lookups and no inverse permutation;
everything that maps an index to (host, port) or back goes through the Plan's methods.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Container, Iterator
from dataclasses import dataclass

from netscand.engine.clock import TICK_BITS, TICK_MASK, WRAP_MS
from netscand.engine.shm import PLAN_BYTES, PLAN_SLOTS, SHARD_MAX

HEADER = struct.Struct("<IBBBB16sII6sHdIIIIIIIIIIHH")
# What each header field holds, in order (nh and np_: the host and port counts).
_NAMES = ("gen", "kind", "slot", "share", "retries", "key", "ifindex", "src_ip", "src_mac", "sport_base",
          "rate", "timeout_init_ms", "timeout_min_ms", "timeout_max_ms", "shard_size", "hosts", "ports",
          "flags", "gap_ms", "jitter_ms", "silent_probes", "sport_lo", "sport_hi")
_CODES = re.findall(r"\d*[A-Za-z]", HEADER.format[1:])
_MAX = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF}
assert len(_NAMES) == len(_CODES)
# The generation (first field) is also read and written alone, natively: one aligned 4-byte
# store, never seen half written by a worker (see ipc/ring.py).
_GEN = struct.Struct("I")
HEADER_BYTES = 128
assert HEADER.size <= HEADER_BYTES

FLAG_LOOPBACK = 1  # send at the IP layer: Linux drops 127/8 frames injected below it as martians
# The rate is a ceiling the worker's closed loop (rate.py) climbs to while the path keeps pace;
# without it the rate is pinned (the user gave one). A paced plan ignores it: its hosts' gaps
# set its pace.
FLAG_ADAPTIVE = 2

# The adaptive reply timeout (measured RTT, within these bounds) unless a scan fixes one.
TIMEOUT_INIT_MS, TIMEOUT_MIN_MS, TIMEOUT_MAX_MS = 1000, 100, 3000
# RTTs are read from the send tick echoed in replies, which wraps: past it, a slow reply would
# pass for a fast one and shrink the timeout (clock.py).
assert TIMEOUT_MAX_MS < WRAP_MS
# A paced plan's per-host gap and jitter: longer than a day is no scan a worker should
# hold a shard slot for (and a garbled header's 4-byte field would otherwise read as weeks).
PACED_MAX_MS = 86_400_000


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
    gap_ms: int = 0  # paced: each host gets at most one probe per gap; 0: unpaced
    jitter_ms: int = 0  # each per-host wait is gap_ms + uniform[0, jitter_ms)
    # Paced: ports[:silent_probes] go first to each host; one that answers none of them (once
    # their replies are waited out) gets no more probes. 0: a host is never given up.
    silent_probes: int = 0
    sport_lo: int = 0  # for probes that pick a source port per probe: the range (0, 0: none)
    sport_hi: int = 0

    @property
    def paced(self) -> bool:
        return self.gap_ms > 0

    @property
    def adaptive(self) -> bool:
        return bool(self.flags & FLAG_ADAPTIVE) and not self.paced

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

    def index(self, host: int, port: int) -> int:
        """The flat index of (host index, port index) in this plan's layout."""
        if self.gap_ms:
            return host * len(self.ports) + port
        return port * len(self.hosts) + host

    def pair(self, index: int) -> tuple[int, int]:
        """(host index, port index) of a flat index: index()'s inverse."""
        if self.gap_ms:
            return divmod(index, len(self.ports))
        port, host = divmod(index, len(self.hosts))
        return host, port

    def rows(self, shard: int, states: bytes) -> Iterator[tuple[int, int, bytes]]:
        """Per host a shard touches: its index, the index of the first port it has in the
        shard, and its state bytes there (its ports are consecutive from that one)."""
        start = self.shard_range(shard)[0]
        if self.gap_ms:  # whole hosts, one after the other (read() checks the shard size)
            np_ = len(self.ports)
            for k in range(len(states) // np_):
                yield start // np_ + k, 0, states[k * np_ : (k + 1) * np_]
            return
        nh = len(self.hosts)
        for o in range(min(len(states), nh)):
            yield (start + o) % nh, (start + o) // nh, states[o::nh]

    @staticmethod
    def capacity(nports: int) -> int:
        """How many hosts fit in one plan slot with this many ports."""
        return (PLAN_BYTES - HEADER_BYTES - 2 * nports) // 10


def write(buf: memoryview, plan: Plan) -> None:
    """Fill a slot; the generation goes in last so a reader never sees half a plan. A field its
    header cannot hold raises ValueError naming it (not struct.error, which names none), before
    anything is written."""
    nh, np_ = len(plan.hosts), len(plan.ports)
    if nh > Plan.capacity(np_):
        raise ValueError("plan does not fit its slot")
    header = (plan.gen, plan.kind, plan.slot, plan.share, plan.retries, plan.key, plan.ifindex,
              plan.src_ip, plan.src_mac, plan.sport_base, plan.rate, plan.timeout_init_ms,
              plan.timeout_min_ms, plan.timeout_max_ms, plan.shard_size, nh, np_, plan.flags,
              plan.gap_ms, plan.jitter_ms, plan.silent_probes, plan.sport_lo, plan.sport_hi)
    _check_fields(header, plan)
    _GEN.pack_into(buf, 0, 0)
    at = HEADER_BYTES
    struct.pack_into(f"<{nh}I", buf, at, *plan.hosts)
    at += 4 * nh
    buf[at : at + 6 * nh] = b"".join(plan.macs)
    at += 6 * nh
    struct.pack_into(f"<{np_}H", buf, at, *plan.ports)
    HEADER.pack_into(buf, 0, 0, *header[1:])
    _GEN.pack_into(buf, 0, plan.gen)


def _check_fields(header: tuple[object, ...], plan: Plan) -> None:
    """Every header field, host, port and MAC fits what the slot holds it in."""
    lists = (("hosts", plan.hosts, "I"), ("ports", plan.ports, "H"))
    for name, value, code in (*zip(_NAMES, header, _CODES), *((n, v, c) for n, vs, c in lists for v in vs)):
        if code in _MAX and not (isinstance(value, int) and 0 <= value <= _MAX[code]):
            raise ValueError(f"plan field {name}: {value!r} is not within 0-{_MAX[code]}")
        if code.endswith("s") and not (isinstance(value, bytes) and len(value) == int(code[:-1])):
            raise ValueError(f"plan field {name}: {value!r} is not {code[:-1]} bytes")
    if any(len(mac) != 6 for mac in plan.macs):
        raise ValueError("plan field macs: each is 6 bytes")


def generation(buf: memoryview) -> int:
    return _GEN.unpack_from(buf, 0)[0]


def release(buf: memoryview) -> None:
    """Free a slot: workers drop shards of it at their next check."""
    _GEN.pack_into(buf, 0, 0)


def read(buf: memoryview, slot_index: int, kinds: Container[int]) -> Plan | None:
    """The plan in slot `slot_index`; None when there is none. The control process writes the
    slot but is not trusted with the worker's life: a header that does not add up (sizes past
    the slot, a kind not in `kinds`, another slot's number, an adaptive timeout the send tick
    cannot time, a paced layout whose shards split a host, a source port range that is none)
    raises PlanError."""
    (gen, kind, slot, share, retries, key, ifindex, src_ip, src_mac, sport_base, rate, t_init,
     t_min, t_max, shard_size, nh, np_, flags, gap, jitter, silent, sport_lo,
     sport_hi) = HEADER.unpack_from(buf, 0)
    if gen == 0:
        return None
    if (kind not in kinds or slot != slot_index or slot >= PLAN_SLOTS or not nh or not np_
            or nh > Plan.capacity(np_) or not 0 < shard_size <= SHARD_MAX
            or not slot << TICK_BITS <= sport_base <= 0x10000 - ((PLAN_SLOTS - slot) << TICK_BITS) or (t_min < t_max and t_max >= WRAP_MS)):
        raise PlanError(f"slot {slot_index}: kind {kind}, slot {slot}, {nh} hosts, {np_} ports, "
                        f"shards of {shard_size}, source ports from {sport_base}, "
                        f"timeout {t_min}-{t_max} ms")
    _check_pacing(slot_index, np_, shard_size, gap, jitter, silent, sport_lo, sport_hi)
    at = HEADER_BYTES
    hosts = struct.unpack_from(f"<{nh}I", buf, at)
    at += 4 * nh
    raw = bytes(buf[at : at + 6 * nh])
    macs = tuple(raw[i : i + 6] for i in range(0, 6 * nh, 6))
    at += 6 * nh
    ports = struct.unpack_from(f"<{np_}H", buf, at)
    plan = Plan(gen, kind, slot, share, retries, key, ifindex, src_ip, src_mac, sport_base, rate,
                t_init, t_min, t_max, shard_size, hosts, macs, ports, flags, gap, jitter, silent,
                sport_lo, sport_hi)
    # The slot may have been released and refilled while we copied it.
    return plan if generation(buf) == gen else None


def _check_pacing(slot_index: int, np_: int, shard_size: int, gap: int, jitter: int, silent: int,
                  sport_lo: int, sport_hi: int) -> None:
    """The header's pacing fields add up: times a worker can hold to, a silent-probe count
    within the ports, shards of whole hosts when paced (one worker owns each host's gap), and
    a source port range that is one."""
    ports_ok = (sport_lo, sport_hi) == (0, 0) or 1 <= sport_lo <= sport_hi <= 0xFFFF
    times_ok = gap <= PACED_MAX_MS and jitter <= PACED_MAX_MS and silent <= np_
    unpaced_ok = gap > 0 or (jitter, silent) == (0, 0)  # pacing fields without a gap: a garbled header
    layout_ok = gap == 0 or shard_size % np_ == 0
    if not (ports_ok and times_ok and unpaced_ok and layout_ok):
        raise PlanError(f"slot {slot_index}: gap {gap} ms, jitter {jitter} ms, {silent} silent probes, "
                        f"shards of {shard_size} for {np_} ports, source ports {sport_lo}-{sport_hi}")
