"""Devices and ports found by a scan, written as they arrive and read back as the result document.

Writes are upserts: the engine and the profilers report the same host or port more than once,
and each report may know more (a MAC, a banner) than the last.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import orjson
from sqlite_utils import Database

from netscand.store.compare import ip_key

DEVICE_KEYS = frozenset({"ip", "mac", "hostname", "vendor", "os_guess", "timed_out", "ports"})
PORT_REQUIRED = ("port", "protocol", "state")
PORT_DETAILS = ("service", "product", "version", "banner", "cpe", "cve_note")
PORT_KEYS = frozenset({*PORT_REQUIRED, *PORT_DETAILS, "cves"})
_PORT_COLUMNS = (*PORT_REQUIRED, *PORT_DETAILS, "cves")


def put_device(
    db: Database, scan_id: str, ip: str, *, mac: str | None, hostname: str | None, vendor: str | None,
    os_guess: str | None, timed_out: bool | None, extra: dict[str, Any] | None,
) -> None:
    with db.atomic():
        _require_scan(db, scan_id)
        _put_device(db, scan_id, ip, mac=mac, hostname=hostname, vendor=vendor, os_guess=os_guess,
                    timed_out=timed_out, extra=extra)


def put_ports(db: Database, scan_id: str, ip: str, ports: list[dict[str, Any]]) -> None:
    rows = _port_rows(scan_id, ip, ports)
    with db.atomic():
        _require_scan(db, scan_id)
        _put_ports(db, scan_id, ip, rows)


def put_devices(db: Database, scan_id: str, devices: list[dict[str, Any]]) -> None:
    """Many devices and their ports in one transaction: `devices` are put_device's keyword
    arguments plus `ip` and `ports`."""
    checked = [(d, _port_rows(scan_id, d["ip"], d["ports"])) for d in devices]
    with db.atomic():
        _require_scan(db, scan_id)
        for device, rows in checked:
            _put_device(db, scan_id, device["ip"], **{k: device.get(k) for k in _DEVICE_ARGS})
            _put_ports(db, scan_id, device["ip"], rows)


_DEVICE_ARGS = ("mac", "hostname", "vendor", "os_guess", "timed_out", "extra")


def _put_device(
    db: Database, scan_id: str, ip: str, *, mac: str | None, hostname: str | None, vendor: str | None,
    os_guess: str | None, timed_out: bool | None, extra: dict[str, Any] | None,
) -> None:
    ip, ip_key = _address(ip)
    clash = DEVICE_KEYS & (extra or {}).keys()
    if clash:
        raise ValueError(f"extra must not carry the device's own keys: {', '.join(sorted(clash))}")
    stored = list(db.query("SELECT extra FROM devices WHERE scan_id = ? AND ip = ?", [scan_id, ip]))
    merged = (orjson.loads(stored[0]["extra"]) if stored else {}) | (extra or {})
    if merged.get("tarpit"):
        merged.pop("os_confidence", None)
    db.execute(
        """
        INSERT INTO devices (scan_id, ip, ip_key, mac, hostname, vendor, os_guess, timed_out, extra)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (scan_id, ip) DO UPDATE SET
            mac = coalesce(excluded.mac, mac),
            hostname = coalesce(excluded.hostname, hostname),
            vendor = coalesce(excluded.vendor, vendor),
            os_guess = coalesce(excluded.os_guess, os_guess),
            timed_out = coalesce(excluded.timed_out, timed_out),
            extra = excluded.extra
        """,
        [scan_id, ip, ip_key, mac, hostname, vendor, os_guess,
         None if timed_out is None else int(timed_out), orjson.dumps(merged).decode()],
    )
    if merged.get("tarpit"):
        _forget_tarpit_answers(db, scan_id, ip)


def _forget_tarpit_answers(db: Database, scan_id: str, ip: str) -> None:
    """A tarpit (it answers every port, scan/result.py) is saved as an ordinary host while the
    scan runs, until it shows itself: the open TCP ports and the OS guessed from its SYN-ACKs
    that were saved by then were never its own. Its UDP answers are (scan/result.py lists them)."""
    db.execute("DELETE FROM ports WHERE scan_id = ? AND ip = ? AND protocol = 'tcp' AND state = 'open'",
               [scan_id, ip])
    db.execute("UPDATE devices SET os_guess = NULL WHERE scan_id = ? AND ip = ?", [scan_id, ip])


def _port_rows(scan_id: str, ip: str, ports: list[dict[str, Any]]) -> list[list[Any]]:
    ip = _address(ip)[0]
    for port in ports:
        _check_port(port)
    return [_port_row(scan_id, ip, port) for port in ports]


def _put_ports(db: Database, scan_id: str, ip: str, rows: list[list[Any]]) -> None:
    ip, ip_key = _address(ip)
    db.execute(
        """
        INSERT INTO devices (scan_id, ip, ip_key, extra) VALUES (?, ?, ?, '{}')
        ON CONFLICT (scan_id, ip) DO NOTHING
        """,
        [scan_id, ip, ip_key],
    )
    db.conn.executemany(
        f"""
        INSERT INTO ports (scan_id, ip, {', '.join(_PORT_COLUMNS)})
        VALUES ({', '.join('?' * (2 + len(_PORT_COLUMNS)))})
        ON CONFLICT (scan_id, ip, port, protocol) DO UPDATE SET
            state = excluded.state,
            {', '.join(f'{k} = coalesce(excluded.{k}, {k})' for k in (*PORT_DETAILS, 'cves'))}
        """,
        rows,
    )


def put_cves(db: Database, scan_id: str, devices: list[dict[str, Any]]) -> None:
    """A re-match's CVE fields (scan/cves.py), replacing the earlier ones: each device's
    `cve_counts` and each of its ports' `cves` and `cve_note`, set when given and cleared when
    not. Upserts can't say this: they keep a field the new report leaves out."""
    for device in devices:
        _port_rows(scan_id, device["ip"], device["ports"])  # checked as any port is
    with db.atomic():
        _require_scan(db, scan_id)
        for device in devices:
            _put_device_cves(db, scan_id, _address(device["ip"])[0], device)


def _put_device_cves(db: Database, scan_id: str, ip: str, device: dict[str, Any]) -> None:
    counts = device.get("cve_counts")
    db.execute(
        "UPDATE devices SET extra = CASE WHEN ? IS NULL THEN json_remove(extra, '$.cve_counts') "
        "ELSE json_set(extra, '$.cve_counts', json(?)) END WHERE scan_id = ? AND ip = ?",
        [None if counts is None else 1, orjson.dumps(counts).decode(), scan_id, ip])
    db.conn.executemany(
        "UPDATE ports SET cves = ?, cve_note = ? WHERE scan_id = ? AND ip = ? AND port = ? AND protocol = ?",
        [[None if p.get("cves") is None else orjson.dumps(p["cves"]).decode(), p.get("cve_note"),
          scan_id, ip, p["port"], p["protocol"]] for p in device["ports"]])


def result(db: Database, scan_id: str) -> list[dict[str, Any]]:
    """Every device of the scan, sorted by address, with its ports."""
    return result_page(db, scan_id, 1, -1)


def result_page(db: Database, scan_id: str, page: int, per_page: int) -> list[dict[str, Any]]:
    """One page of the scan's devices, sorted by address, with their ports: only that page's
    rows are read (per_page -1: every device)."""
    if page < 1 or not (per_page >= 1 or per_page == -1):
        raise ValueError(f"page starts at 1 and per_page at 1 (or is -1), got page={page} per_page={per_page}")
    return _devices(db, "scan_id = :scan ORDER BY ip_key LIMIT :limit OFFSET :offset",
                    {"scan": scan_id, "limit": per_page, "offset": (page - 1) * max(per_page, 0)})


def page_after(db: Database, scan_id: str, after: str | None, per_page: int) -> list[dict[str, Any]]:
    """The scan's next `per_page` devices by address after address `after` (None: from the
    first), with their ports. By key rather than offset: a page reads no rows before it, and a
    device a running scan finds meanwhile neither repeats nor skips one already given."""
    if per_page < 1:
        raise ValueError(f"per_page starts at 1, got {per_page}")
    return _devices(db, "scan_id = :scan AND ip_key > :after ORDER BY ip_key LIMIT :limit",
                    {"scan": scan_id, "after": b"" if after is None else _address(after)[1], "limit": per_page})


def _devices(db: Database, selection: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    """The devices `selection` (a WHERE clause with its ORDER BY and LIMIT) picks, with their ports."""
    devices = list(db.query(
        f"SELECT ip, mac, hostname, vendor, os_guess, timed_out, extra FROM devices WHERE {selection}", args))
    if not devices:
        return []
    ports: dict[str, list[dict[str, Any]]] = {}
    for row in db.query(
        f"SELECT ip, {', '.join(_PORT_COLUMNS)} FROM ports WHERE scan_id = :scan AND ip IN "
        f"(SELECT ip FROM devices WHERE {selection}) ORDER BY port, protocol",
        args,
    ):
        ports.setdefault(row.pop("ip"), []).append(_port_view(row))
    return [_device_view(row, ports.get(row["ip"], [])) for row in devices]


_CVE_CONCERNED = "scan_id = :scan AND (cpe IS NOT NULL OR cves IS NOT NULL OR cve_note IS NOT NULL)"


def cve_devices(db: Database, scan_id: str) -> list[dict[str, Any]]:
    """The scan's devices that CVE matching concerns, each with only its ports that have a CPE or
    an earlier match's CVE fields: what a re-match reads (the other ports have nothing to change),
    not the whole result."""
    ports: dict[str, list[dict[str, Any]]] = {}
    for row in db.query(f"SELECT ip, {', '.join(_PORT_COLUMNS)} FROM ports WHERE {_CVE_CONCERNED} "
                        "ORDER BY port, protocol", {"scan": scan_id}):
        ports.setdefault(row.pop("ip"), []).append(_port_view(row))
    devices = db.query(
        "SELECT ip, mac, hostname, vendor, os_guess, timed_out, extra FROM devices WHERE scan_id = :scan "
        f"AND ip IN (SELECT ip FROM ports WHERE {_CVE_CONCERNED}) ORDER BY ip_key", {"scan": scan_id})
    return [_device_view(row, ports.get(row["ip"], [])) for row in devices]


def _device_view(row: dict[str, Any], ports: list[dict[str, Any]]) -> dict[str, Any]:
    device = {k: row[k] for k in ("ip", "mac", "hostname", "vendor", "os_guess")}
    device.update(orjson.loads(row["extra"]))
    if row["timed_out"]:
        device["timed_out"] = True
    device["ports"] = ports
    return device


def delete_some(db: Database, scan_id: str, limit: int) -> int:
    """Delete up to `limit` of the scan's port rows, or when none are left, of its device rows;
    how many went. A scan's rows go a bounded transaction at a time, so a large scan's deletion
    never holds the database for long."""
    with db.atomic():
        for table in ("ports", "devices"):
            gone = db.execute(
                f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE scan_id = ? LIMIT ?)",
                [scan_id, limit],
            ).rowcount
            if gone:
                return gone
    return 0


def counts(db: Database, scan_id: str) -> tuple[int, int]:
    row = next(db.query(
        """
        SELECT (SELECT count(*) FROM devices WHERE scan_id = :scan) AS devices,
               (SELECT count(*) FROM ports WHERE scan_id = :scan AND state = 'open') AS open_ports
        """,
        {"scan": scan_id},
    ))
    return row["devices"], row["open_ports"]


def _address(ip: str) -> tuple[str, bytes]:
    """The canonical text of an address, and its key (compare.ip_key: how every store sorts addresses)."""
    text = str(ipaddress.ip_address(ip))
    return text, ip_key(text)


def _require_scan(db: Database, scan_id: str) -> None:
    if not list(db.query("SELECT 1 FROM scans WHERE id = ?", [scan_id])):
        raise KeyError(scan_id)


def _check_port(port: dict[str, Any]) -> None:
    unknown = port.keys() - PORT_KEYS
    if unknown:
        raise ValueError(f"unknown port field(s): {', '.join(sorted(unknown))}")
    number = port.get("port")
    if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 65535:
        raise ValueError(f"port must be an integer 1-65535, got {number!r}")
    for key in ("protocol", "state"):
        if not isinstance(port.get(key), str) or not port[key]:
            raise ValueError(f"port {number}: {key} must be a non-empty string, got {port.get(key)!r}")
    for key in PORT_DETAILS:
        if port.get(key) is not None and not isinstance(port[key], str):
            raise ValueError(f"port {number}: {key} must be a string or None, got {port[key]!r}")
    if port.get("cves") is not None and not isinstance(port["cves"], list):
        raise ValueError(f"port {number}: cves must be a list or None, got {port['cves']!r}")


def _port_row(scan_id: str, ip: str, port: dict[str, Any]) -> list[Any]:
    cves = port.get("cves")
    return [scan_id, ip, *(port.get(k) for k in (*PORT_REQUIRED, *PORT_DETAILS)),
            None if cves is None else orjson.dumps(cves).decode()]


def _port_view(row: dict[str, Any]) -> dict[str, Any]:
    view = {k: row[k] for k in (*PORT_REQUIRED, "service")}
    for key in ("product", "version", "banner", "cpe", "cve_note"):
        if row[key] is not None:
            view[key] = row[key]
    if row["cves"] is not None:
        view["cves"] = orjson.loads(row["cves"])
    return view
