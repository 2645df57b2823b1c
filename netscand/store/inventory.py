"""The device inventory's writes: a completed scan merged into its site's devices, in one
transaction with the changes it made and their events; and what each merged scan covered.

A device row (table `inventory`) keeps its fields in columns and, in `state` (JSON), its open
ports as a result lists them (`ports`, with their services and CVEs), its `hostnames` and
`detected`: the ports ("22/tcp") whose service, product and version came from service detection.
`inventory_ports` and `inventory_cves` are indexes of that state for the device filters
(vulnerable findings only), `inventory_addresses` every address it was seen at; all three refer
to the device by its integer `key`.

A merge is read, planned and applied in three steps, so that the store's one writer thread holds
only the writes (a /16's merge reads and compares for seconds): the devices it concerns are read
a chunk per store call (known_after, by_identity: those of the site within the scan's target
ranges, by ip_key ranges, and those the found devices' MACs and names may be) after the site's
`version`; plan() compares them with what the scan found, off the store; apply() writes the
plan in one transaction, unless a merge of the site has moved its version since (Moved: read
again). Only devices whose ports changed have their port and CVE rows rewritten, only the
columns that changed are updated, and a device found as it was only has its last_seen and
last_scan_id updated. merge() does the three in one transaction, for a caller already on the
writer.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import secrets
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

import orjson
from sqlite_utils import Database

from netscand.store import changes, compare, scans
from netscand.store.compare import SEVERITY_RANKS, Covered, ip_key, vulnerable

COLUMNS = ("key", "id", "site_id", "site_key", "identity", "ip", "ip_key", "mac", "mac_randomized", "hostname",
           "vendor", "os", "present", "max_severity", "first_seen", "last_seen", "last_scan_id", "state")
SEEN = ("last_seen", "last_scan_id")  # all a merge changes of a device found as it was
LOOKUP_CHUNK = 500  # identities per query: under SQLite's limit of bound parameters
Row = dict[str, Any]


class Moved(Exception):
    """The site's inventory was merged into since a merge read it: its plan is stale."""


@dataclasses.dataclass(frozen=True)
class Merging:
    """What a merge is of: a scan's devices, into its site's inventory, for what it covered."""

    scan_id: str
    site_id: str | None
    covered: Covered
    at: str
    owner: str | None = None

    @property
    def site_key(self) -> str:
        return self.site_id or ""


@dataclasses.dataclass
class Plan:
    """A merge's writes, computed from the site's inventory as it was at `version`."""

    merging: Merging
    version: int
    writes: _Writes
    changes: changes.Batch


def merge(db: Database, *, scan_id: str, site_id: str | None, found: list[dict[str, Any]], covered: Covered,
          at: str, owner: str | None = None) -> list[dict[str, Any]]:
    """Merge a completed scan's devices (`found`, as its result lists them) into the site's
    inventory, for what the scan covered; the change records written (each with its
    `change.<kind>` event, owned by `owner`), in one transaction."""
    merging = Merging(scan_id, site_id, covered, at, owner)
    with db.atomic():
        known = concerned(db, merging.site_key, covered, found)
        return apply(db, plan(merging, version(db, merging.site_key), known, found))


def of_scan(db: Database, scan_id: str, covered: Covered, at: str) -> Merging:
    """The merge of a stored scan: into its site, as its owner's; CVEs count as matched only if
    the scan's stored match had data (a match without any found nothing)."""
    scan = scans.get(db, scan_id)
    if scan is None:
        raise KeyError(scan_id)
    matched = bool(((scan["cve"] or {}).get("cve_data") or {}).get("loaded"))
    return Merging(scan_id, scan["site_id"], dataclasses.replace(covered, cves=covered.cves and matched), at,
                   scan["owner"])


def keep_covered(db: Database, scan_id: str, covered: Covered) -> None:
    """What a scan covered as it ran (its targets then, less the policy's exclusions; its ports),
    for the diffs of it later: today's configuration may resolve it otherwise, or not at all."""
    db.execute("INSERT OR REPLACE INTO scan_coverage (scan_id, ranges, tcp, udp, services, cves) "
               "VALUES (?, ?, ?, ?, ?, ?)",
               [scan_id, orjson.dumps(covered.ranges).decode(), orjson.dumps(sorted(covered.tcp)).decode(),
                orjson.dumps(sorted(covered.udp)).decode(), int(covered.services), int(covered.cves)])


def covered_of(db: Database, scan_id: str) -> Covered | None:
    """What a merged scan covered, as keep_covered kept it (None: never merged)."""
    row = next(iter(db.query("SELECT ranges, tcp, udp, services, cves FROM scan_coverage WHERE scan_id = ?",
                             [scan_id])), None)
    if row is None:
        return None
    return Covered(tuple((lo, hi) for lo, hi in orjson.loads(row["ranges"])), frozenset(orjson.loads(row["tcp"])),
                   frozenset(orjson.loads(row["udp"])), bool(row["services"]), bool(row["cves"]))


# -- reading what a merge concerns ---------------------------------------------------------------

def version(db: Database, site_key: str) -> int:
    """How many merges the site's inventory has taken: read before its devices, checked by apply."""
    row = next(iter(db.query("SELECT version FROM inventory_versions WHERE site_key = ?", [site_key])), None)
    return 0 if row is None else int(row["version"])


def bounds(covered: Covered) -> list[tuple[bytes, bytes]]:
    """The scan's target ranges as ip_key ranges."""
    return [(ip_key(str(ipaddress.IPv4Address(lo))), ip_key(str(ipaddress.IPv4Address(hi))))
            for lo, hi in covered.ranges]


def known_after(db: Database, site_key: str, within: tuple[bytes, bytes], after: tuple[bytes, str] | None,
                limit: int) -> list[Row]:
    """Up to `limit` of the site's devices within an ip_key range, after (ip_key, id) `after`
    (None: from the first), by (ip_key, id): the list's index finds them."""
    lo, hi = within
    return list(db.query(
        f"SELECT {', '.join(COLUMNS)} FROM inventory WHERE site_key = ? AND ip_key BETWEEN ? AND ? "
        "AND (ip_key, id) > (?, ?) ORDER BY ip_key, id LIMIT ?", [site_key, lo, hi, *(after or (lo, "")), limit]))


def identities(found: Sequence[dict[str, Any]], rows: Sequence[Row]) -> list[str]:
    """The identities a found device's MAC or name gives that none of `rows` has: those devices
    (elsewhere in the site) are read too, by_identity."""
    return sorted({k for d in found for k in compare.keys(d)[:-1]} - {r["identity"] for r in rows})


def by_identity(db: Database, site_key: str, wanted: list[str]) -> list[Row]:
    """The site's devices of these identities (at most LOOKUP_CHUNK of them)."""
    return list(db.query(f"SELECT {', '.join(COLUMNS)} FROM inventory WHERE site_key = ? "
                         f"AND identity IN ({', '.join('?' * len(wanted))})", [site_key, *wanted]))


def concerned(db: Database, site_key: str, covered: Covered, found: Sequence[dict[str, Any]]) -> list[Row]:
    """Every device a merge concerns, in one read (merge(), in its transaction)."""
    rows = [row for within in bounds(covered) for row in known_after(db, site_key, within, None, -1)]
    return rows + [row for chunk in chunks(identities(found, rows), LOOKUP_CHUNK)
                   for row in by_identity(db, site_key, chunk)]


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _device(row: Row) -> dict[str, Any]:
    """An inventory row as the comparison reads a device."""
    state = orjson.loads(row["state"])
    return {"identity": row["identity"], "present": bool(row["present"]), "ip": row["ip"], "mac": row["mac"],
            "hostname": row["hostname"], "vendor": row["vendor"], "os_guess": row["os"], **state}


# -- planning ------------------------------------------------------------------------------------

def plan(merging: Merging, version: int, rows: Sequence[Row], found: list[dict[str, Any]]) -> Plan:
    """The writes of a merge of `found` into the devices `rows` (as read at `version`); no store."""
    known = sorted({r["key"]: r for r in rows}.values(), key=lambda r: (r["ip_key"], r["id"]))
    devices = [_device(row) for row in known]
    pairing = compare.pair(devices, found, merging.covered)
    writes = _Writes(merging)
    for i, j, identity in pairing.matched:
        writes.seen(known[i], devices[i], found[j], identity)
    for j, identity in pairing.new:
        writes.new(found[j], identity)
    for i in pairing.unmatched:
        if known[i]["present"] and merging.covered.covers(known[i]["ip"]):
            writes.gone(known[i])
    writes.changes.sort(key=compare.order)
    return Plan(merging, version, writes, changes.prepare(writes.changes, owner=merging.owner))


def apply(db: Database, planned: Plan) -> list[dict[str, Any]]:
    """Write a plan, its changes and their events, and move the site's version, in one
    transaction; Moved if the version is no longer the one it was planned at."""
    site_key = planned.merging.site_key
    with db.atomic():
        if version(db, site_key) != planned.version:
            raise Moved(site_key)
        planned.writes.flush(db)
        db.execute("INSERT INTO inventory_versions (site_key, version) VALUES (?, 1) "
                   "ON CONFLICT (site_key) DO UPDATE SET version = version + 1", [site_key])
        return changes.write(db, planned.changes)


# -- writing -------------------------------------------------------------------------------------

def _device_ids() -> Iterator[str]:
    """Ids for a merge's new devices, each sorting after every id made before it: UUIDv7s (RFC
    9562) of one time, counting up from a random start below it (its method 1). A first merge's
    ids then append to the indexes holding them (inventory's, changes_by_device) rather than
    each landing on some page of them, which cost a /16's first merge 0.8 s of its write."""
    stamp = time.time_ns() // 1_000_000 << 80 | 7 << 76
    for n in itertools.count(secrets.randbits(72)):  # below 2 ** 72: its 74 bits never carry into the version
        yield str(uuid.UUID(int=stamp | (n >> 62) << 64 | 2 << 62 | n & (1 << 62) - 1))


@dataclasses.dataclass
class _Writes:
    """A merge's writes, gathered as the rows each table takes in one executemany, so that the
    write does little but write them. A new device's key is a placeholder (-1, -2, ...) until
    flush, in the write's transaction, numbers them after the inventory's last."""

    merging: Merging
    ids: Iterator[str] = dataclasses.field(default_factory=_device_ids)  # new devices'
    changes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    created: list[list[Any]] = dataclasses.field(default_factory=list)  # new inventory rows
    updated: dict[tuple[str, ...], list[list[Any]]] = dataclasses.field(  # columns changed -> values, key
        default_factory=lambda: defaultdict(list))
    addresses: list[list[Any]] = dataclasses.field(default_factory=list)
    stale: list[list[Any]] = dataclasses.field(default_factory=list)  # known devices whose ports changed
    ports: list[list[Any]] = dataclasses.field(default_factory=list)  # their and new devices' rows
    cves: list[list[Any]] = dataclasses.field(default_factory=list)
    gone_keys: list[list[Any]] = dataclasses.field(default_factory=list)

    def seen(self, row: Row, before: dict[str, Any], found: dict[str, Any], identity: str) -> None:
        """A known device found: back from gone, it appears, and what changed while it was away
        is told too (its state takes it)."""
        covered, at = self.merging.covered, self.merging.at
        self.addresses.append([row["key"], found["ip"], at, at])
        if row["present"] and row["ip"] == found["ip"] and row["identity"] == identity \
                and compare.unchanged(before, found, covered):
            self.updated[SEEN].append([at, self.merging.scan_id, row["key"]])
            return
        state = compare.merged(before, found, covered)
        if not row["present"]:
            self._note(row["id"], "device_appeared", found["ip"], None, found["ip"])
        if row["ip"] != found["ip"]:
            self._note(row["id"], "address_changed", found["ip"], row["ip"], found["ip"])
        for change in compare.device_changes(before, found, covered):
            self.changes.append(self._base(row["id"]) | change)
        if state["ports"] != before.get("ports"):
            self.stale.append([row["key"]])
            self._index(row["key"], state["ports"])
        new = self._row(row["key"], row["id"], identity, state, first_seen=row["first_seen"])
        columns = tuple(c for c in COLUMNS if c not in SEEN and c != "state" and new[c] != row[c])
        if _kept(state) != _kept(before):
            columns += ("state",)
        self.updated[(*columns, *SEEN)].append([*(new[c] for c in columns), *(new[c] for c in SEEN), row["key"]])

    def new(self, found: dict[str, Any], identity: str) -> None:
        key, device_id = -1 - len(self.created), next(self.ids)
        state = compare.merged({"ip": found["ip"]}, found, self.merging.covered)
        self._note(device_id, "device_appeared", found["ip"], None, found["ip"])
        self._index(key, state["ports"])
        self.created.append(list(self._row(key, device_id, identity, state, first_seen=self.merging.at).values()))
        self.addresses.append([key, state["ip"], self.merging.at, self.merging.at])

    def gone(self, row: Row) -> None:
        self._note(row["id"], "device_gone", row["ip"], row["ip"], None)
        self.gone_keys.append([row["key"]])

    def _index(self, key: int, ports: list[dict[str, Any]]) -> None:
        """A device's port and CVE rows: what the device filters search."""
        for p in ports:
            self.ports.append([key, p["port"], p["protocol"], p.get("service"), p.get("product"), p.get("version")])
            self.cves += [[key, f["id"], SEVERITY_RANKS.get(f.get("severity") or "", 0), p["port"], p["protocol"]]
                          for f in vulnerable(p)]

    def _base(self, device_id: str) -> dict[str, Any]:
        m = self.merging
        return {"scan_id": m.scan_id, "site_id": m.site_id, "device_id": device_id, "at": m.at}

    def _note(self, device_id: str, kind: str, ip: str, before: Any, after: Any) -> None:
        self.changes.append(self._base(device_id) | {"kind": kind, "ip": ip, "before": before, "after": after})

    def _row(self, key: int, device_id: str, identity: str, state: dict[str, Any], first_seen: str) -> Row:
        m, mac = self.merging, state.get("mac")
        return dict(zip(COLUMNS, [
            key, device_id, m.site_id, m.site_key, identity, state["ip"], ip_key(state["ip"]), mac,
            int(bool(mac) and compare.randomized(mac)), state.get("hostname"), state.get("vendor"),
            state.get("os_guess"), 1, _max_severity(state["ports"]), first_seen, m.at, m.scan_id,
            orjson.dumps(_kept(state)).decode()], strict=True))

    def flush(self, db: Database) -> None:
        conn = db.conn
        # New devices' keys follow the inventory's last: placeholder -n is last + n. SQLite turns
        # them, so that the rows go to executemany as they were planned (a row made here per row
        # would be Python's work on the writer, and new objects enough to wake its collector).
        last = int(next(conn.execute("SELECT coalesce(max(key), 0) FROM inventory"))[0])
        keyed = f"iif(?1 > 0, ?1, {last} - ?1)"
        conn.executemany(f"INSERT INTO inventory ({', '.join(COLUMNS)}) "
                         f"VALUES ({last} - ?, {', '.join('?' * (len(COLUMNS) - 1))})", self.created)
        for columns, values in self.updated.items():
            conn.executemany(f"UPDATE inventory SET {', '.join(f'{c} = ?' for c in columns)} WHERE key = ?", values)
        conn.executemany("UPDATE inventory SET present = 0 WHERE key = ?", self.gone_keys)
        conn.executemany(
            f"INSERT INTO inventory_addresses (device_key, ip, first_seen, last_seen) VALUES ({keyed}, ?, ?, ?) "
            "ON CONFLICT (device_key, ip) DO UPDATE SET last_seen = excluded.last_seen", self.addresses)
        conn.executemany("DELETE FROM inventory_ports WHERE device_key = ?", self.stale)
        conn.executemany("DELETE FROM inventory_cves WHERE device_key = ?", self.stale)
        conn.executemany("INSERT INTO inventory_ports (device_key, port, protocol, service, product, version) "
                         f"VALUES ({keyed}, ?, ?, ?, ?, ?)", self.ports)
        conn.executemany("INSERT OR IGNORE INTO inventory_cves (device_key, cve_id, severity, port, protocol) "
                         f"VALUES ({keyed}, ?, ?, ?, ?)", self.cves)


def _kept(state: dict[str, Any]) -> dict[str, Any]:
    """What a device's JSON state holds."""
    return {k: state[k] for k in ("ports", "hostnames", "detected") if k in state}


def _max_severity(ports: list[dict[str, Any]]) -> int:
    return max((SEVERITY_RANKS.get(f.get("severity") or "", 0) for p in ports for f in vulnerable(p)), default=0)
