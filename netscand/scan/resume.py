"""A running scan's checkpoint, and where each of its shards goes on after a restart.

What is kept (store/checkpoints.py), written through the store's writer thread at most every
FLUSH_EVERY, or at once when the engine waits for it:
- the scan's spec, and each plan it started with its key (the keyed permutation gives the same
  order again) and shard size, and a digest of what it probes (a plan cut differently, because
  the routes or the ARP answers changed, is not resumed: the scan fails with that reason);
- per shard: done, or `granted` (the highest pass that may have been sent) and the last
  position told by the worker (R_MARK, every MARK_EVERY probes and at each pass's end) that is
  older than the plan's longest reply timeout plus GRACE_S, with whether that pass goes in the
  shard's keyed order;
- the engine's records that the shared memory would take with it: open ports and ARP answers as
  they come, a shard's tallies (closed counts, the ports listed) and coverage counts (R_COVER,
  R_DONE's) together with its end, so a count is never kept for a shard that runs again.

The bound: no port is probed more than 1 + retries times, restarts included.
1. A pass (attempt n) sends each port of its shard at most once.
2. Every pass of a shard sent by any process of any life has a number no higher than the shard's
   stored `granted`: a shard is handed out only once its first pass's number is stored (the
   dispatcher's gate), and a worker starts a retry pass only once the control process has
   stored its number and granted it (engine/shards.py expire).
3. A shard resumed after a restart sends its next pass as granted + 1 (first_pass), and goes on
   with its retries up to its plan's `retries` (the scan's, or the probe type's own: ARP's 2):
   pass numbers never repeat across lives, and never exceed them. With 1 and 2, each port gets
   at most 1 + retries probes.
The resumed pass starts at the stored position when that position is of the last granted pass
and in the keyed order: what came before it was sent, and its answers kept (the open ports
journaled within the grace; the closed ones are lost with the shared memory, and the next retry
pass asks them again, since the shard's states start blank). When no retry pass would be left
for that, the resumed pass starts from the beginning instead, so a closed port's answer is had
again rather than read as filtered. A restart costs each shard in progress one pass; a shard
with none left ends with what was journaled (its open ports; its closed ones then read filtered).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import deque
from functools import partial

import orjson

from netscand.engine import plan as plans
from netscand.engine.shm import (
    MARK_BASE,
    MARK_PASS_END,
    R_DONE,
    R_HOST,
    R_PORT,
    RESULT,
    S_OPEN,
    Result,
    pack_result,
)
from netscand.scan.dispatch import Start
from netscand.scan.spec import Discovery, Pacing, ScanSpec
from netscand.scan.targets import Targets
from netscand.scan.work import Work, plan_retries
from netscand.store.checkpoints import (
    Delta,
    PlanNo,
    PlanRow,
    RecordRow,
    ShardRow,
    Stored,
)

GRACE_S = 0.2  # beyond a plan's longest reply timeout: a reply the worker saw is in the ring by then
ShardKey = tuple[PlanNo, int]


class Mismatch(Exception):
    """A resumed scan planned a plan other than the one it started before the restart."""


def spec_json(spec: ScanSpec) -> str:
    return orjson.dumps(dataclasses.asdict(spec)).decode()


def spec_from_json(text: str) -> ScanSpec:
    d = orjson.loads(text)
    tuples = {k: tuple(d[k]) for k in ("ports", "udp_ports")}
    discovery = d["discovery"] and Discovery(d["discovery"]["icmp_echo"], tuple(d["discovery"]["syn_ports"]),
                                             tuple(d["discovery"]["ack_ports"]))
    return ScanSpec(**{**d, **tuples, "targets": Targets(tuple(tuple(r) for r in d["targets"]["ranges"])),
                       "discovery": discovery or None, "pacing": d["pacing"] and Pacing(**d["pacing"])})


def plan_no(work: Work) -> PlanNo:
    return work.group, work.index


def digest(work: Work, hosts: tuple[int, ...]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(orjson.dumps([work.probe.kind, hosts, work.ports]))
    return h.digest()


def first_pass(row: ShardRow, retries: int) -> Start | None:
    """Where a shard in progress at a restart goes on (see the module's doc); None: no pass left."""
    nxt = row.granted + 1
    if nxt > retries:
        return None
    if row.attempt == row.granted and row.base and nxt < retries:
        return nxt, row.pos
    return nxt, 0


class Checkpoint:
    """One scan's checkpoint as it runs: what its next write holds, and what a resumed scan's
    plans take from the stored one."""

    def __init__(self, retries: int, stored: Stored | None = None) -> None:
        self.retries = retries  # the scan's; a plan may have its own (ARP's), kept in `bounds`
        self.stored = stored
        self.gens: dict[PlanNo, int] = {}
        # Each plan's retries: its passes are granted and numbered against them, not the scan's
        # (an ARP plan's fixed 2 under a scan's 0 would wait for ever for a grant).
        self.bounds: dict[PlanNo, int] = {}
        self.rows: dict[ShardKey, ShardRow] = {}
        self.cleared: set[ShardKey] = set()  # handed out once their row is written
        self.marks: dict[ShardKey, deque[tuple[float, int, int, bool]]] = {}
        self.grace: dict[PlanNo, float] = {}
        self.held: dict[ShardKey, list[bytes]] = {}  # a shard's tallies, until its end
        self.changed: set[ShardKey] = set()
        self.grants: dict[ShardKey, int] = {}  # retry passes to grant once written
        self.reached: dict[ShardKey, int] = {}  # the newest position of each shard's pass in keyed order
        self.delta = Delta()
        self.urgent = False  # the engine waits for the next write

    # -- planning ----------------------------------------------------------------------------
    def fixed(self, work: Work, hosts: tuple[int, ...]) -> tuple[bytes, int] | None:
        """A resumed plan's key and shard size; None for a plan not started before."""
        row = self.stored and self.stored.plans.get(plan_no(work))
        if not row:
            return None
        if row.digest != digest(work, hosts):
            raise Mismatch(f"cannot resume after a restart: plan {row.group}.{row.work} no longer probes the "
                           "same hosts (the routes or the ARP answers changed, or, for a scan with a "
                           "per-host time budget, a lower max_rate cut smaller plans)")
        return row.key, row.shard_size

    def planned(self, work: Work, hosts: tuple[int, ...], plan: plans.Plan) -> None:
        no = plan_no(work)
        self.gens[no] = plan.gen
        self.bounds[no] = plan.retries
        self.grace[no] = plan.timeout_max_ms / 1000 + GRACE_S
        if not (self.stored and no in self.stored.plans):
            self.delta.plans.append(PlanRow(*no, plan.key, plan.shard_size, digest(work, hosts)))

    def submission(self, work: Work) -> dict:
        """The dispatcher's arguments for the work's plan: its done shards, where the ones in
        progress go on, and the gate that records each shard before it is handed out."""
        no = plan_no(work)
        self.bounds[no] = plan_retries(work.probe, self.retries)  # before its plan is made
        done, starts = set(), {}
        for shard, row in (self.stored.shards.get(no, {}) if self.stored else {}).items():
            start = None if row.done else first_pass(row, self.bounds[no])
            if start is None:
                done.add(shard)
            else:
                starts[shard] = start
        return {"done": frozenset(done), "starts": starts, "gate": partial(self._gate, no, starts),
                "restart": partial(self._restart, no)}

    def _restart(self, no: PlanNo, shard: int) -> Start | None:
        """Where a shard whose worker died goes on: as after a restart of the daemon, from the
        newest position it told (every record of the dead worker is in by now), once the new
        pass's number is written (the gate asks again)."""
        key = (no, shard)
        marks = self.marks.pop(key, None)
        if marks:
            _, attempt, pos, base = marks[-1]
            self._row(key, attempt=attempt, pos=pos, base=base)
        row = self.rows.get(key)
        start = (0, 0) if row is None else first_pass(row, self.bounds[no])
        if start is None:
            self._row(key, done=True)
            self.held.pop(key, None)
            self.reached.pop(key, None)
            return None
        self._row(key, granted=start[0], attempt=-1, pos=0, base=False)
        self.cleared.discard(key)
        self.grants.pop(key, None)
        return start

    def replay(self, work: Work) -> list[Result]:
        """The records the work's plan had journaled before the restart."""
        raw = self.stored.records.get(plan_no(work), []) if self.stored else []
        return [Result.unpack(r) for r in raw if len(r) == RESULT.size]

    def _gate(self, no: PlanNo, starts: dict[int, Start], shards: list[int]) -> bool:
        if (no, shards[0]) in self.cleared:
            return True
        for shard in shards:
            key = (no, shard)
            if key not in self.rows:
                attempt = starts.get(shard, (0, 0))[0]
                self.rows[key] = ShardRow(*no, shard, False, attempt, -1, 0, False)
                self.changed.add(key)
        self.urgent = True
        return False

    # -- engine records ------------------------------------------------------------------------
    def record(self, work: Work, r: Result) -> None:
        key = (plan_no(work), r.shard)
        raw = pack_result(r.kind, state=r.state, ttl=r.ttl, flags=r.flags, plan_gen=r.plan_gen, shard=r.shard,
                          ip=r.ip, port=r.port, win=r.win, a=r.a, b=r.b, mac=r.mac, ipid=r.ipid, opts=r.opts)
        if r.kind == R_HOST or (r.kind == R_PORT and r.state == S_OPEN):
            self.delta.records.append(RecordRow(*key[0], raw))
        elif r.kind == R_DONE:
            self.delta.records.extend(RecordRow(*key[0], held) for held in self.held.pop(key, ()))
            self.delta.records.append(RecordRow(*key[0], raw))  # its coverage counts (coverage.py)
            self._row(key, done=True)
            self.marks.pop(key, None)
            self.reached.pop(key, None)
        else:
            self.held.setdefault(key, []).append(raw)

    def mark(self, work: Work, r: Result) -> None:
        key = (plan_no(work), r.shard)
        if r.flags & MARK_BASE:
            self.reached[key] = r.b
        self.marks.setdefault(key, deque()).append((time.monotonic(), r.a, r.b, bool(r.flags & MARK_BASE)))
        if r.flags & MARK_PASS_END and r.a < self.bounds[key[0]] and key in self.rows:
            self._row(key, granted=max(self.rows[key].granted, r.a + 1))
            self.grants[key] = r.a + 1
            self.urgent = True

    def in_hand(self, work: Work) -> int:
        """Probes the plan's shards in progress have sent of their pass in keyed order: the
        progress between two shards' ends (a full-range scan of a few hosts has a few shards)."""
        no = plan_no(work)
        return sum(pos for (plan, _), pos in self.reached.items() if plan == no)

    def _row(self, key: ShardKey, **fields: object) -> None:
        row = self.rows.get(key) or ShardRow(*key[0], key[1], False, 0, -1, 0, False)
        self.rows[key] = row._replace(**fields)
        self.changed.add(key)

    # -- writes ----------------------------------------------------------------------------------
    def take(self) -> Delta:
        """What the next write holds: records and plans so far, each shard's newest position
        that is past its grace, its grants and ends."""
        now = time.monotonic()
        for key, marks in self.marks.items():
            newest = None
            while marks and marks[0][0] + self.grace.get(key[0], GRACE_S) <= now:
                newest = marks.popleft()
            if newest is not None and key in self.rows:
                _, attempt, pos, base = newest
                self._row(key, attempt=attempt, pos=pos, base=base)
        delta, self.delta = self.delta, Delta()
        delta.shards = [self.rows[k] for k in self.changed]
        self.changed = set()
        self.urgent = False
        return delta

    def written(self, delta: Delta) -> list[tuple[int, int, int]]:
        """A write is done: its shards may be handed out; (plan gen, shard, attempt) of the
        retry passes it recorded, to grant."""
        grants = []
        for row in delta.shards:
            key = ((row.group, row.work), row.shard)
            if row.done:  # nothing more of it is asked: memory stays with the shards in hand
                self.rows.pop(key, None)
                self.cleared.discard(key)
                continue
            self.cleared.add(key)
            if key in self.grants and self.grants[key] <= row.granted:
                grants.append((self.gens[key[0]], row.shard, self.grants.pop(key)))
        return grants

