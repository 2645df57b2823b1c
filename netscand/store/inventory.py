"""The device inventory's writes: a completed scan merged into its site's devices, in one
transaction with the changes it made and their events; and what each merged scan covered.

A device row (table `inventory`) keeps its fields in columns and, in `state` (JSON), its open
ports as a result lists them (`ports`, with their services and CVEs), its `hostnames` and
`detected`: the ports ("22/tcp") whose service, product and version came from service detection.
`inventory_ports` and `inventory_cves` are indexes of that state for the device filters
(vulnerable findings only), `inventory_addresses` every address it was seen at.

Only the devices a merge concerns are read: those of the site within the scan's target ranges
(by ip_key ranges, never address by address) and those the found devices' MACs and names may
be; only devices whose ports changed have their port and CVE rows rewritten, and a device the
scan found as it was only has its last_seen and last_scan_id updated.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import uuid
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

import orjson
from sqlite_utils import Database

from netscand.store import changes, compare, results, scans
from netscand.store.compare import SEVERITY_RANKS, Covered, ip_key, vulnerable

COLUMNS = ("id", "site_id", "site_key", "identity", "ip", "ip_key", "mac", "mac_randomized", "hostname", "vendor",
           "os", "present", "max_severity", "first_seen", "last_seen", "last_scan_id", "state")
SEEN = ("last_seen", "last_scan_id")  # all a merge changes of a device found as it was
LOOKUP_CHUNK = 500  # identities per query: under SQLite's limit of bound parameters


def merge(db: Database, *, scan_id: str, site_id: str | None, found: list[dict[str, Any]], covered: Covered,
          at: str, owner: str | None = None) -> list[dict[str, Any]]:
    """Merge a completed scan's devices (`found`, as its result lists them) into the site's
    inventory, for what the scan covered; the change records written (each with its
    `change.<kind>` event, owned by `owner`), in one transaction."""
    site_key = site_id or ""
    with db.atomic():
        known = _concerned(db, site_key, covered, found)
        devices = [_device(row) for row in known]
        pairing = compare.pair(devices, found)
        writes = _Writes(scan_id, site_id, site_key, covered, at)
        for i, j, identity in pairing.matched:
            writes.seen(known[i], devices[i], found[j], identity)
        for j, identity in pairing.new:
            writes.new(found[j], identity)
        for i in pairing.unmatched:
            if known[i]["present"] and covered.covers(known[i]["ip"]):
                writes.gone(known[i])
        writes.flush(db)
        return changes.record(db, sorted(writes.changes, key=compare.order), owner=owner)


def merge_scan(db: Database, scan_id: str, covered: Covered, at: str) -> list[dict[str, Any]]:
    """Merge a stored scan's result, into the inventory of its site, as its owner's; CVEs count
    as matched only if the scan's stored match had data (a match without any found nothing).
    What it covered is kept first, in a transaction of its own: a diff reads it even if the merge
    fails."""
    scan = scans.get(db, scan_id)
    if scan is None:
        raise KeyError(scan_id)
    matched = bool(((scan["cve"] or {}).get("cve_data") or {}).get("loaded"))
    covered = dataclasses.replace(covered, cves=covered.cves and matched)
    with db.atomic():
        keep_covered(db, scan_id, covered)
    return merge(db, scan_id=scan_id, site_id=scan["site_id"], found=results.result(db, scan_id),
                 covered=covered, at=at, owner=scan["owner"])


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

def _concerned(db: Database, site_key: str, covered: Covered, found: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The site's devices within the scan's ranges, and those a found device's MAC or name may be
    (unless a device within the ranges has that identity already)."""
    rows: dict[str, dict[str, Any]] = {}
    select = f"SELECT {', '.join(COLUMNS)} FROM inventory WHERE site_key = ?"
    for lo, hi in covered.ranges:
        bounds = [ip_key(str(ipaddress.IPv4Address(n))) for n in (lo, hi)]
        for row in db.query(f"{select} AND ip_key BETWEEN ? AND ?", [site_key, *bounds]):
            rows[row["id"]] = row
    identities = {k for d in found for k in compare.keys(d)[:-1]} - {r["identity"] for r in rows.values()}
    for chunk in _chunks(sorted(identities), LOOKUP_CHUNK):
        for row in db.query(f"{select} AND identity IN ({', '.join('?' * len(chunk))})", [site_key, *chunk]):
            rows[row["id"]] = row
    return sorted(rows.values(), key=lambda r: r["ip_key"])


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _device(row: dict[str, Any]) -> dict[str, Any]:
    """An inventory row as the comparison reads a device."""
    state = orjson.loads(row["state"])
    return {"identity": row["identity"], "present": bool(row["present"]), "ip": row["ip"], "mac": row["mac"],
            "hostname": row["hostname"], "vendor": row["vendor"], "os_guess": row["os"], **state}


# -- writing -------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Writes:
    """A merge's writes, gathered so that each table takes them in one executemany."""

    scan_id: str
    site_id: str | None
    site_key: str
    covered: Covered
    at: str
    changes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    rows: list[list[Any]] = dataclasses.field(default_factory=list)  # inventory rows, upserted whole
    addresses: list[list[Any]] = dataclasses.field(default_factory=list)
    reindex: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)  # device -> its ports
    gone_ids: list[list[Any]] = dataclasses.field(default_factory=list)
    touched: list[list[Any]] = dataclasses.field(default_factory=list)  # found as they were

    def seen(self, row: dict[str, Any], before: dict[str, Any], found: dict[str, Any], identity: str) -> None:
        """A known device found: back from gone, it appears, and what changed while it was away
        is told too (its state takes it)."""
        if row["present"] and row["ip"] == found["ip"] and row["identity"] == identity \
                and compare.unchanged(before, found, self.covered):
            self.touched.append([self.at, self.scan_id, row["id"]])
            self.addresses.append([row["id"], row["ip"], self.at, self.at])
            return
        state = compare.merged(before, found, self.covered)
        if not row["present"]:
            self._note(row["id"], "device_appeared", found["ip"], None, found["ip"])
        if row["ip"] != found["ip"]:
            self._note(row["id"], "address_changed", found["ip"], row["ip"], found["ip"])
        for change in compare.device_changes(before, found, self.covered):
            self.changes.append(self._base(row["id"]) | change)
        if state["ports"] != before.get("ports"):
            self.reindex[row["id"]] = state["ports"]
        new = self._row(row["id"], identity, state, first_seen=row["first_seen"])
        if all(new[c] == row[c] for c in COLUMNS if c not in SEEN and c != "state") \
                and _kept(state) == _kept(before):
            self.touched.append([self.at, self.scan_id, row["id"]])
        else:
            self.rows.append(list(new.values()))
        self.addresses.append([row["id"], state["ip"], self.at, self.at])

    def new(self, found: dict[str, Any], identity: str) -> None:
        device_id = str(uuid.uuid4())
        state = compare.merged({"ip": found["ip"]}, found, self.covered)
        self._note(device_id, "device_appeared", found["ip"], None, found["ip"])
        self.reindex[device_id] = state["ports"]
        self.rows.append(list(self._row(device_id, identity, state, first_seen=self.at).values()))
        self.addresses.append([device_id, state["ip"], self.at, self.at])

    def gone(self, row: dict[str, Any]) -> None:
        self._note(row["id"], "device_gone", row["ip"], row["ip"], None)
        self.gone_ids.append([row["id"]])

    def _base(self, device_id: str) -> dict[str, Any]:
        return {"scan_id": self.scan_id, "site_id": self.site_id, "device_id": device_id, "at": self.at}

    def _note(self, device_id: str, kind: str, ip: str, before: Any, after: Any) -> None:
        self.changes.append(self._base(device_id) | {"kind": kind, "ip": ip, "before": before, "after": after})

    def _row(self, device_id: str, identity: str, state: dict[str, Any], first_seen: str) -> dict[str, Any]:
        mac = state.get("mac")
        return dict(zip(COLUMNS, [
            device_id, self.site_id, self.site_key, identity, state["ip"], ip_key(state["ip"]), mac,
            int(bool(mac) and compare.randomized(mac)), state.get("hostname"), state.get("vendor"),
            state.get("os_guess"), 1, _max_severity(state["ports"]), first_seen, self.at, self.scan_id,
            orjson.dumps(_kept(state)).decode()], strict=True))

    def flush(self, db: Database) -> None:
        conn = db.conn
        conn.executemany(
            f"INSERT INTO inventory ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
            "ON CONFLICT (id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:]), self.rows)
        conn.executemany(
            "INSERT INTO inventory_addresses (device_id, ip, first_seen, last_seen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (device_id, ip) DO UPDATE SET last_seen = excluded.last_seen", self.addresses)
        conn.executemany("UPDATE inventory SET last_seen = ?, last_scan_id = ? WHERE id = ?", self.touched)
        conn.executemany("UPDATE inventory SET present = 0 WHERE id = ?", self.gone_ids)
        stale = [[device_id] for device_id in self.reindex]
        conn.executemany("DELETE FROM inventory_ports WHERE device_id = ?", stale)
        conn.executemany("DELETE FROM inventory_cves WHERE device_id = ?", stale)
        conn.executemany(
            "INSERT INTO inventory_ports (device_id, port, protocol, service, product, version) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [[d, p["port"], p["protocol"], p.get("service"), p.get("product"), p.get("version")]
             for d, ports in self.reindex.items() for p in ports])
        conn.executemany(
            "INSERT OR IGNORE INTO inventory_cves (device_id, cve_id, severity, port, protocol) VALUES (?, ?, ?, ?, ?)",
            [[d, f["id"], SEVERITY_RANKS.get(f.get("severity") or "", 0), p["port"], p["protocol"]]
             for d, ports in self.reindex.items() for p in ports for f in vulnerable(p)])


def _kept(state: dict[str, Any]) -> dict[str, Any]:
    """What a device's JSON state holds."""
    return {k: state[k] for k in ("ports", "hostnames", "detected") if k in state}


def _max_severity(ports: list[dict[str, Any]]) -> int:
    return max((SEVERITY_RANKS.get(f.get("severity") or "", 0) for p in ports for f in vulnerable(p)), default=0)
