"""What a running scan needs to resume after a restart of the daemon (scan/resume.py decides
what it means): the spec it runs, each plan it started (its key: the same key gives the same
order), each shard's progress, and the engine records that must outlive the process (open ports
as they come, a shard's tally with its end, ARP answers).

Rows go once the scan will not resume (it ended, or failed to resume), after its final state is
written; deleting the scan deletes them too (foreign keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from sqlite_utils import Database

PlanNo = tuple[int, int]  # (group, work): a plan's place in the scan's deterministic sequence


class PlanRow(NamedTuple):
    group: int
    work: int
    key: bytes
    shard_size: int
    digest: bytes  # of its probe type, hosts and ports: a resumed scan checks it plans the same


class ShardRow(NamedTuple):
    group: int
    work: int
    shard: int
    done: bool
    granted: int  # the highest pass that may have been sent
    attempt: int  # the pass of the last position recorded; -1: none recorded
    pos: int
    base: bool  # that pass goes in the shard's keyed order (pos names the same probes again)


class RecordRow(NamedTuple):
    group: int
    work: int
    record: bytes  # an engine result record (engine/shm.py RESULT)


@dataclass
class Delta:
    """What a scan's checkpoint changed since its last write."""

    plans: list[PlanRow] = field(default_factory=list)
    shards: list[ShardRow] = field(default_factory=list)
    records: list[RecordRow] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.plans or self.shards or self.records)


@dataclass
class Stored:
    """A scan's checkpoint as the store holds it."""

    spec: str  # JSON (scan/resume.py spec_json)
    remote: bool
    rate: float | None  # the request's own rate, checked against the policy again
    plans: dict[PlanNo, PlanRow]
    shards: dict[PlanNo, dict[int, ShardRow]]
    records: dict[PlanNo, list[bytes]]


def begin(db: Database, scan_id: str, spec: str, remote: bool, rate: float | None) -> None:
    with db.atomic():
        db.execute("INSERT OR REPLACE INTO resume_scans (scan_id, spec, remote, rate) VALUES (?, ?, ?, ?)",
                   [scan_id, spec, int(remote), rate])


def save(db: Database, scan_id: str, delta: Delta) -> None:
    """One checkpoint write, in one transaction: records, plans and shards land together."""
    with db.atomic():
        db.conn.executemany("INSERT OR REPLACE INTO resume_plans (scan_id, grp, work, key, shard_size, digest) "
                       "VALUES (?, ?, ?, ?, ?, ?)", [(scan_id, *p) for p in delta.plans])
        db.conn.executemany("INSERT OR REPLACE INTO resume_shards (scan_id, grp, work, shard, done, granted, attempt, "
                       "pos, base) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [(scan_id, s.group, s.work, s.shard, int(s.done), s.granted, s.attempt, s.pos, int(s.base))
                        for s in delta.shards])
        db.conn.executemany("INSERT INTO resume_records (scan_id, grp, work, record) VALUES (?, ?, ?, ?)",
                       [(scan_id, *r) for r in delta.records])


def load(db: Database, scan_id: str) -> Stored | None:
    head = db.execute("SELECT spec, remote, rate FROM resume_scans WHERE scan_id = ?", [scan_id]).fetchone()
    if head is None:
        return None
    plans = {(r[0], r[1]): PlanRow(*r) for r in db.execute(
        "SELECT grp, work, key, shard_size, digest FROM resume_plans WHERE scan_id = ?", [scan_id])}
    shards: dict[PlanNo, dict[int, ShardRow]] = {}
    for r in db.execute("SELECT grp, work, shard, done, granted, attempt, pos, base FROM resume_shards "
                        "WHERE scan_id = ?", [scan_id]):
        row = ShardRow(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6], bool(r[7]))
        shards.setdefault((row.group, row.work), {})[row.shard] = row
    records: dict[PlanNo, list[bytes]] = {}
    for grp, work, record in db.execute("SELECT grp, work, record FROM resume_records WHERE scan_id = ? "
                                        "ORDER BY rowid", [scan_id]):
        records.setdefault((grp, work), []).append(record)
    return Stored(head[0], bool(head[1]), head[2], plans, shards, records)


def resumable(db: Database) -> list[str]:
    """Running scans that left a checkpoint, oldest first."""
    return [r[0] for r in db.execute(
        "SELECT s.id FROM scans s JOIN resume_scans r ON r.scan_id = s.id WHERE s.status = 'running' "
        "ORDER BY s.created_at, s.id")]


def resuming(db: Database, scan_ids: list[str]) -> None:
    """Count a restart in each scan's checkpoint: the write a resumed scan needs the store to take."""
    with db.atomic():
        db.conn.executemany("UPDATE resume_scans SET resumes = resumes + 1 WHERE scan_id = ?",
                            [(i,) for i in scan_ids])


def drop(db: Database, scan_id: str) -> None:
    with db.atomic():
        for table in ("resume_records", "resume_shards", "resume_plans", "resume_scans"):
            db.execute(f"DELETE FROM {table} WHERE scan_id = ?", [scan_id])
