"""A scan's result in the formats other tools read, written a page of devices at a time: JSON
Lines (one device per line), CSV (one port per line) and nmap's XML (scan/nmap_xml.py).

Pure: result documents in, bytes out. The API streams them (api/exports.py), reading the result
a page at a time, so an export of any size holds one page in memory. The CSV and JSON Lines
writers take any device dicts, so the inventory's export (GET /api/v1/devices) uses them too.

CSV is RFC 4180 in UTF-8, with a header row. A cell that begins with `=`, `+`, `-`, `@`, a tab or
a carriage return gets a leading apostrophe, as OWASP advises against CSV injection: a
spreadsheet would run such a cell (a hostile hostname or banner-derived version such as
`=HYPERLINK(...)`) as a formula. Control characters but tab, CR and LF (ESC, NUL, DEL, C1) and
what UTF-8 can't encode become U+FFFD, as in the XML: `netscanctl result --format csv` prints a
banner to a terminal, which an escape sequence in it would drive.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import orjson

from netscand.scan.nmap_xml import NmapXml, clean

# (header, device key) of the columns before a port's own; the inventory names its own.
Columns = Sequence[tuple[str, str]]
SCAN_COLUMNS: Columns = (("scan_id", "scan_id"), ("ip", "ip"), ("mac", "mac"), ("hostname", "hostname"),
                         ("vendor", "vendor"), ("os", "os_guess"))
PORT_COLUMNS = ("port", "protocol", "state", "service", "product", "version", "cpe", "cves")
# The inventory's devices (GET /api/v1/devices?format=csv), whose ports are the open ones.
INVENTORY_COLUMNS: Columns = (
    ("device_id", "id"), ("site_id", "site_id"), ("ip", "ip"), ("mac", "mac"), ("hostname", "hostname"),
    ("vendor", "vendor"), ("os", "os"), ("present", "present"), ("max_severity", "max_severity"),
    ("first_seen", "first_seen"), ("last_seen", "last_seen"), ("last_scan_id", "last_scan_id"))
INVENTORY_PORT_COLUMNS = ("port", "protocol", "service", "product", "version")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class Export(Protocol):
    """One export of one scan: head, then each page's bytes in order, then tail."""

    def head(self) -> bytes: ...

    def page(self, devices: list[dict[str, Any]]) -> bytes: ...

    def tail(self) -> bytes: ...


def export(name: str, scan: dict[str, Any], addresses: int | None = None) -> Export:
    """The writer of format `name` (a key of scan/formats.py's FORMATS) for `scan`, a scan row as the store holds
    it, which probed `addresses` (None: not known)."""
    if name == "nmap-xml":
        return NmapXml(scan, addresses)
    return device_export(name, SCAN_COLUMNS, {"scan_id": scan["id"]})


def device_export(name: str, columns: Columns, extra: dict[str, Any] | None = None,
                  port_columns: Sequence[str] = PORT_COLUMNS) -> Export:
    """The writer of format `name` (one of scan/formats.py's DEVICE_FORMATS) of any device dicts: CSV with the
    device's `columns` before `port_columns`, or JSON Lines; `extra` goes first in each device."""
    return CsvWriter(columns, port_columns, extra or {}) if name == "csv" else JsonLinesWriter(extra or {})


def jsonl_line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record) + b"\n"


def csv_header(columns: Columns, port_columns: Sequence[str] = PORT_COLUMNS) -> bytes:
    return _csv_lines([[header for header, _ in columns] + list(port_columns)])


def csv_device(device: dict[str, Any], columns: Columns, port_columns: Sequence[str] = PORT_COLUMNS) -> bytes:
    """The device's rows: one per port, or one with empty port cells for a device without any
    listed (so that it is not lost)."""
    lead = [device.get(key) for _, key in columns]
    return _csv_lines([lead + [_port_cell(p, key) for key in port_columns] for p in device.get("ports") or [{}]])


def _port_cell(port: dict[str, Any], key: str) -> Any:
    return ";".join(c["id"] for c in port.get("cves") or ()) if key == "cves" else port.get(key)


def _csv_lines(rows: Iterable[list[Any]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([[_cell(v) for v in row] for row in rows])
    return out.getvalue().encode()


def _cell(value: Any) -> str:
    text = "" if value is None else str(value).lower() if isinstance(value, bool) else clean(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class JsonLinesWriter:
    def __init__(self, extra: dict[str, Any]) -> None:
        self.extra = extra

    def head(self) -> bytes:
        return b""

    def page(self, devices: list[dict[str, Any]]) -> bytes:
        return b"".join(jsonl_line({**self.extra, **d}) for d in devices)

    def tail(self) -> bytes:
        return b""


class CsvWriter:
    def __init__(self, columns: Columns, port_columns: Sequence[str], extra: dict[str, Any]) -> None:
        self.columns, self.port_columns, self.extra = columns, port_columns, extra

    def head(self) -> bytes:
        return csv_header(self.columns, self.port_columns)

    def page(self, devices: list[dict[str, Any]]) -> bytes:
        return b"".join(csv_device({**self.extra, **d}, self.columns, self.port_columns) for d in devices)

    def tail(self) -> bytes:
        return b""
