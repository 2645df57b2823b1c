"""`netscanctl devices` and `netscanctl device ID`: the inventory's devices, filtered a page at a
time, and one device with its ports, CVEs, addresses and changes (the daemon's /api/v1/devices)."""

from __future__ import annotations

import argparse
from functools import partial
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.table import Table

from netscand.cli import ctl, export
from netscand.scan.formats import DEVICE_FORMATS

if TYPE_CHECKING:
    from netscand.cli.ctl import Client

DEVICES = "/api/v1/devices"
SEVERITIES = ("low", "medium", "high", "critical")
# option -> query parameter; the daemon checks every value
FILTERS = {"site_id": "site_id", "address": "address", "search": "q", "port": "port", "service": "service",
           "product": "product", "os": "os", "cve": "cve", "min_severity": "min_severity",
           "seen_since": "seen_since", "not_seen_since": "not_seen_since"}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="the inventory's devices, filtered (every filter must hold)")
    p.add_argument("--site-id")
    p.add_argument("--address", help="an address or CIDR block, e.g. 198.18.0.0/24")
    p.add_argument("--search", metavar="TEXT", help="a part of the hostname or vendor")
    p.add_argument("--port", help="an open port: 22, or 161/udp")
    p.add_argument("--service", help="an open port's service, e.g. ssh")
    p.add_argument("--product", help="an open port's product, e.g. OpenSSH")
    p.add_argument("--os", help="a part of the OS guess")
    p.add_argument("--cve", help="a CVE id")
    p.add_argument("--min-severity", choices=SEVERITIES, help="a CVE this severe or worse")
    p.add_argument("--seen-since", metavar="TIME", help="last seen at or after, e.g. 2026-12-01T00:00:00Z")
    p.add_argument("--not-seen-since", metavar="TIME", help="last seen before")
    present = p.add_mutually_exclusive_group()
    present.add_argument("--present", action="store_true", default=None, help="found by the last scan covering it")
    present.add_argument("--gone", action="store_false", dest="present", help="not found by it")
    ctl.add_paging(p)
    p.add_argument("--format", default="json", choices=("json", *DEVICE_FORMATS),
                   help="json: the table (or with --json the API's page); csv: one open port per line, jsonl: "
                        "one device per line, of every matching device (no paging), to stdout as they come")
    sub.add_parser("device", help="a device with its ports, CVEs, addresses and changes").add_argument("id")


def cmd_devices(client: Client, args: argparse.Namespace, console: Console) -> int:
    params: dict[str, str | int] = {name: getattr(args, option) for option, name in FILTERS.items()
                                    if getattr(args, option) is not None}
    if args.present is not None:
        params["present"] = "true" if args.present else "false"
    if args.format != "json":  # the whole inventory, streamed: the API refuses a page with it
        return export.to_stdout(partial(export.copy_stream, client, DEVICES, params | {"format": args.format}))
    body = client.call("GET", DEVICES, params=params | ctl.paging(args))

    def human() -> None:
        table = Table("id", "ip", "hostname", "vendor", "os", "ports", "worst CVE", "last seen", box=box.SIMPLE)
        for d in body["devices"]:
            ip = d["ip"] if d["present"] else f"{d['ip']} (gone)"
            table.add_row(d["id"], ip, d["hostname"] or "", d["vendor"] or "", d["os"] or "",
                          " ".join(f"{p['port']}/{p['protocol']}" for p in d["ports"]), d["max_severity"] or "",
                          d["last_seen"])
        ctl.print_page(console, table, body, "devices")
    return ctl.out(args, console, body, human)


def cmd_device(client: Client, args: argparse.Namespace, console: Console) -> int:
    return ctl.show(client, args, console, f"{DEVICES}/{args.id}", print_device)


def print_device(console: Console, device: dict) -> None:
    for key in ("id", "site_id", "identity", "ip", "mac", "hostname", "vendor", "os", "present", "first_seen",
                "last_seen", "last_scan_id"):
        if device[key] is not None:
            console.print(f"{key:>14}  {device[key]}")
    ports = Table("port", "service", "product", "version", box=box.SIMPLE, title="open ports")
    for p in device["ports"]:
        ports.add_row(f"{p['port']}/{p['protocol']}", p.get("service", ""), p.get("product", ""), p.get("version", ""))
    console.print(ports)
    if device["cves"]:
        cves = Table("severity", "cve", "port", box=box.SIMPLE, title="CVEs")
        for c in device["cves"]:
            cves.add_row(c["severity"] or "-", c["id"], f"{c['port']}/{c['protocol']}" if c["port"] else "")
        console.print(cves)
    addresses = Table("ip", "first seen", "last seen", box=box.SIMPLE, title="addresses")
    for a in device["addresses"]:
        addresses.add_row(a["ip"], a["first_seen"], a["last_seen"])
    console.print(addresses)
    changes = Table("at", "change", "port", "before", "after", box=box.SIMPLE, title="changes, newest first")
    for c in device["changes"]:
        port = f"{c['port']}/{c['protocol']}" if "port" in c else ""
        changes.add_row(c["at"], c["kind"], port, _text(c["before"]), _text(c["after"]))
    console.print(changes)
    if device["more_changes"]:
        console.print("older changes: netscanctl changes (GET /api/v1/changes)")


def _text(value: object) -> str:
    return "" if value is None else str(value)
