"""Devices: reads of the inventory (written by store/inventory.py), a page of devices matching
filters and one device with its history.

Every filter is answered by an index (schema m008), never by the devices' rows: over 100,000
devices most queries take a few milliseconds (bench/inventory.py measures each). The text filters (hostname or vendor, OS) are
substrings, which no B-tree answers; they scan the narrow indexes that hold those columns
rather than the table with its JSON state.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Any

from sqlite_utils import Database

from netscand.store import changes
from netscand.store.compare import SEVERITY_RANKS, ip_key

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# max_severity and inventory_cves.severity as the inventory stores them
SEVERITY_NAMES = {rank: name for name, rank in SEVERITY_RANKS.items()}
MAX_CHANGES = 100  # of a device's history in its record: the newest

_DEVICE = ("id", "site_id", "identity", "ip", "mac", "mac_randomized", "hostname", "vendor", "os", "present",
           "max_severity", "first_seen", "last_seen", "last_scan_id")
_PORT = ("port", "protocol", "service", "product", "version")


@dataclass(frozen=True)
class Filters:
    """What GET /api/v1/devices filters by; None: not filtered by it. Text is matched without
    regard to ASCII case."""

    site_id: str | None = None
    network: Network | None = None  # its address or CIDR block
    text: str | None = None  # a substring of the hostname or the vendor
    port: int | None = None  # open
    protocol: str | None = None  # of `port`; None: either
    service: str | None = None  # an open port's, whole
    product: str | None = None  # an open port's, whole
    os: str | None = None  # a substring
    cve: str | None = None
    min_severity: int | None = None  # a rank of SEVERITY_RANKS
    seen_since: str | None = None  # last_seen at or after
    not_seen_since: str | None = None  # last_seen before
    present: bool | None = None  # found by the last scan that covered its address


def page(db: Database, filters: Filters, number: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
    """One page of the devices matching `filters`, by site then address, each with its open
    ports; and how many match."""
    if number < 1 or per_page < 1:
        raise ValueError(f"page and per_page start at 1, got page={number} per_page={per_page}")
    query = _Query.of(filters)
    driver = query.driver(db)
    total = query.count(db, driver)
    offset = (number - 1) * per_page
    if total <= offset:
        return [], total
    sql, args = query.ids(driver, (offset + per_page) * query._devices(db) < total * total)
    return _with_ports(db, [r["key"] for r in db.query(f"{sql} LIMIT ? OFFSET ?", [*args, per_page, offset])]), total


def _with_ports(db: Database, keys: list[int]) -> list[dict[str, Any]]:
    """The devices of `keys`, in that order, each with its open ports."""
    rows = {r.pop("key"): r for r in db.query(
        f"SELECT key, {', '.join(_DEVICE)} FROM inventory WHERE key IN ({', '.join('?' * len(keys))})", keys)}
    ports = _ports(db, keys)
    return [_view(rows[k]) | {"ports": ports.get(k, [])} for k in keys]


Key = tuple[str, bytes, str]  # (site_key, ip_key, id): a device's place in the list's order


@dataclass(frozen=True)
class Listing:
    """How an export reads the devices matching its filters a page at a time, chosen once."""

    query: _Query
    driver: Join | None
    walk: bool  # walk the listing index in order, rather than find and sort the matches


def listing(db: Database, filters: Filters, per_page: int) -> Listing:
    """An export's plan, from one count of the matches: walking the listing reads about
    per_page * devices / matches rows a page, finding and sorting the matches reads all of them."""
    query = _Query.of(filters)
    driver = query.driver(db)
    total = query.count(db, driver)
    return Listing(query, driver, per_page * query._devices(db) < total * total)


def page_after(db: Database, plan: Listing, after: Key | None,
               per_page: int) -> tuple[list[dict[str, Any]], Key | None]:
    """The next `per_page` devices after `after` (None: from the first) in the list's order, and
    the key of the last (None: none left). By key rather than offset: a page reads no rows before
    it, and a merge between two pages neither repeats nor skips a device that stays."""
    query = plan.query if after is None else \
        replace(plan.query, own=[*plan.query.own, ("(i.site_key, i.ip_key, i.id) > (?, ?, ?)", list(after))])
    sql, args = query.ids(plan.driver, plan.walk)
    rows = list(db.query(f"{sql} LIMIT ?", [*args, per_page]))
    last = (rows[-1]["site_key"], rows[-1]["ip_key"], rows[-1]["id"]) if rows else None
    return _with_ports(db, [r["key"] for r in rows]), last


def get(db: Database, device_id: str) -> dict[str, Any] | None:
    """One device with its open ports, CVEs, addresses, and its newest MAX_CHANGES changes."""
    row = next(db.query(f"SELECT key, {', '.join(_DEVICE)} FROM inventory WHERE id = ?", [device_id]), None)
    if row is None:
        return None
    key = row.pop("key")
    history = changes.of_device(db, device_id, MAX_CHANGES + 1)
    return _view(row) | {
        "ports": _ports(db, [key]).get(key, []),
        "cves": [{**c, "severity": SEVERITY_NAMES.get(c["severity"])} for c in db.query(
            "SELECT cve_id AS id, severity, port, protocol FROM inventory_cves WHERE device_key = ? "
            "ORDER BY severity DESC, cve_id, port, protocol", [key])],
        "addresses": list(db.query(
            "SELECT ip, first_seen, last_seen FROM inventory_addresses WHERE device_key = ? "
            "ORDER BY last_seen DESC, ip", [key])),
        "changes": history[:MAX_CHANGES],
        "more_changes": len(history) > MAX_CHANGES,
    }


Term = tuple[str, list[Any]]  # SQL and its arguments
Join = tuple[str, Term]  # a filter on a device's ports or CVEs: their table, and a term on its rows `t`


@dataclass(frozen=True)
class _Query:
    """The filters as SQL: terms on the device's own columns (`i`), and terms on its ports or
    CVEs (a table, and a condition on its rows `t`)."""

    own: list[Term]
    joined: list[Join]

    @classmethod
    def of(cls, f: Filters) -> _Query:
        own: list[Term] = []
        joined: list[Join] = []
        if f.site_id is not None:
            own.append(("i.site_key = ?", [f.site_id]))
        if f.network is not None:
            own.append(("i.ip_key BETWEEN ? AND ?", [ip_key(str(f.network.network_address)),
                                                      ip_key(str(f.network.broadcast_address))]))
        if f.text is not None:
            own.append((r"(i.hostname LIKE ? ESCAPE '\' OR i.vendor LIKE ? ESCAPE '\')", [_contains(f.text)] * 2))
        if f.port is not None:
            joined.append(("inventory_ports", ("t.port = ?", [f.port]) if f.protocol is None else
                           ("t.port = ? AND t.protocol = ?", [f.port, f.protocol])))
        for column in ("service", "product"):
            if (value := getattr(f, column)) is not None:
                joined.append(("inventory_ports", (f"t.{column} = ? COLLATE NOCASE", [value])))
        if f.os is not None:
            own.append((r"i.os LIKE ? ESCAPE '\'", [_contains(f.os)]))
        if f.cve is not None:
            joined.append(("inventory_cves", ("t.cve_id = ?", [f.cve])))
        if f.min_severity is not None:
            # `> 0` as the partial index says it, so the planner may use it
            own.append(("i.max_severity >= ? AND i.max_severity > 0", [f.min_severity]))
        if f.seen_since is not None:
            own.append(("i.last_seen >= ?", [f.seen_since]))
        if f.not_seen_since is not None:
            own.append(("i.last_seen < ?", [f.not_seen_since]))
        if f.present is not None:  # a literal, as the partial index of gone devices says it
            own.append((f"i.present = {int(f.present)}", []))
        return cls(own, joined)

    def where(self, walking: bool) -> Term:
        """The WHERE clause of a query of the listing: a device's ports or CVEs are checked
        device by device when `walking`, else found from their table's index."""
        return _where([*self.own, *(_has(join) if walking else _among(join) for join in self.joined)])

    def count(self, db: Database, driver: Join | None) -> int:
        if driver is None:
            where, args = _where([*self.own, *map(_has, self.joined)])
            sql = f"SELECT 1 FROM inventory AS i {where}"
        elif not self.own and len(self.joined) == 1:  # its table's index alone counts the devices
            table, (condition, args) = driver
            sql = f"SELECT DISTINCT device_key FROM {table} AS t WHERE {condition}"
        else:
            sql, args = self.driven(driver, "DISTINCT t.device_key")
        # DISTINCT in a subquery, not count(DISTINCT): the index gives each filter's rows by
        # device, and only this form skips the sort that count(DISTINCT) always makes
        return int(next(db.query(f"SELECT count(*) AS n FROM ({sql})", args))["n"])

    def ids(self, driver: Join | None, walk: bool) -> Term:
        """SELECT of the matches (key, id, site_key, ip_key) in the list's order, found one of two
        ways: walking the listing in order, checking each device, or finding every match (from
        `driver`, else by the device's own filters) and sorting them; the caller adds LIMIT."""
        if walk:
            # The listing index holds the order and every column filtered: no row is read.
            where, args = self.where(walking=True)
            sql = f"SELECT key, id, site_key, ip_key FROM inventory AS i INDEXED BY inventory_listing {where} "
            return sql + "ORDER BY site_key, ip_key, id", args
        if driver is None:
            where, args = _where([*self.own, *map(_has, self.joined)])
            # `+`: the planner must start from the most selective filter, not walk an index in order
            sql = f"SELECT key, id, site_key, ip_key FROM inventory AS i {where} "
            return sql + "ORDER BY +site_key, +ip_key, +id", args
        sql, args = self.driven(driver, "DISTINCT i.key, i.id, i.site_key, i.ip_key")
        return sql + " ORDER BY i.site_key, i.ip_key, i.id", args

    def driver(self, db: Database) -> Join | None:
        """Where the matches are read from: the filter on ports or CVEs whose index holds the
        fewest rows; or (None) the devices matching their own filters, each checked for its
        ports or CVEs (a lookup per filter), when that reads fewer rows."""
        if not self.joined:
            return None
        sizes = [(next(db.query(f"SELECT count(*) AS n FROM {table} AS t WHERE {condition}", args))["n"], i)
                 for i, (table, (condition, args)) in enumerate(self.joined)]
        rows, smallest = min(sizes)
        if self.own:
            # counted only as far as it decides: a substring filter's full count reads every device
            enough = rows // (1 + len(self.joined))
            where, args = _where(self.own)
            own = next(db.query(f"SELECT count(*) AS n FROM (SELECT 1 FROM inventory AS i {where} LIMIT ?)",
                                [*args, enough + 1]))["n"]
            if own <= enough:
                return None
        return self.joined[smallest]

    def driven(self, driver: Join, columns: str) -> Term:
        """SELECT `columns` of the matches, read from `driver`'s index, each device's own
        columns from inventory_filtered by key, its other ports or CVEs checked by their primary key."""
        table, (condition, args) = driver
        where, more = _where([(condition, args), *self.own, *(_has(j) for j in self.joined if j is not driver)])
        # CROSS JOIN: SQLite keeps this order, the driver's rows first; then inventory_filtered,
        # which holds every column the device's own filters read, its address too (a row is read
        # only for a match's id, when the matches are sorted: few; tests/store/test_devices.py
        # holds every count to that index alone).
        sql = f"SELECT {columns} FROM {table} AS t CROSS JOIN inventory AS i INDEXED BY inventory_filtered "
        return sql + f"ON i.key = t.device_key {where}", more

    @staticmethod
    def _devices(db: Database) -> int:
        return int(next(db.query("SELECT count(*) AS n FROM inventory"))["n"])


def _has(join: Join) -> Term:
    table, (condition, args) = join
    return f"EXISTS (SELECT 1 FROM {table} AS t WHERE t.device_key = i.key AND {condition})", args


def _among(join: Join) -> Term:
    table, (condition, args) = join
    return f"i.key IN (SELECT device_key FROM {table} AS t WHERE {condition})", args


def _where(terms: list[Term]) -> Term:
    if not terms:
        return "", []
    return "WHERE " + " AND ".join(sql for sql, _ in terms), [a for _, args in terms for a in args]


def _contains(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _ports(db: Database, keys: list[int]) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {}
    if not keys:
        return found
    rows = db.query(
        f"SELECT device_key, {', '.join(_PORT)} FROM inventory_ports "
        f"WHERE device_key IN ({', '.join('?' * len(keys))}) ORDER BY device_key, port, protocol", keys)
    for row in rows:
        found.setdefault(row.pop("device_key"), []).append({k: v for k, v in row.items() if v is not None})
    return found


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return row | {"mac_randomized": bool(row["mac_randomized"]), "present": bool(row["present"]),
                  "max_severity": SEVERITY_NAMES.get(row["max_severity"])}
