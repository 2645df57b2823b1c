"""`netscanctl changes` and `netscanctl diff`: what completed scans changed in the inventory (of
one scan, or of a site since a time), and what changed between two scans (the daemon's
/api/v1/changes, /scans/{id}/changes and /scans/{id}/diff). Every page is fetched and shown."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from netscand.cli.ctl import Client

PAGE = 1000  # changes per request: the API's largest page


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("changes", help="what completed scans changed in the inventory, oldest first")
    p.add_argument("--scan", metavar="ID", help="only this scan's changes")
    p.add_argument("--site-id", help="only this site's changes")
    p.add_argument("--since", metavar="TIME", help="only changes at or after, e.g. 2026-12-01T00:00:00Z")
    d = sub.add_parser("diff", help="what changed from one scan to another (both completed)")
    d.add_argument("id", help="the later scan")
    d.add_argument("--against", metavar="ID", required=True, help="the earlier scan")


def cmd_changes(client: Client, args: argparse.Namespace, console: Console) -> int:
    from netscand.cli import ctl  # here: ctl imports this module, and preload may import this one first

    if args.scan and (args.site_id or args.since):
        raise ctl.CtlError("--scan lists one scan's changes: give --site-id and --since without it")
    path = f"/api/v1/scans/{args.scan}/changes" if args.scan else "/api/v1/changes"
    params = {k: v for k, v in (("site_id", args.site_id), ("since", args.since)) if v}
    body = {"changes": _every_page(client, path, params)}
    return ctl.out(args, console, body, lambda: _print(console, body["changes"], with_time=True))


def cmd_diff(client: Client, args: argparse.Namespace, console: Console) -> int:
    from netscand.cli import ctl  # see cmd_changes

    body = {"scan_id": args.id, "against": args.against,
            "changes": _every_page(client, f"/api/v1/scans/{args.id}/diff", {"against": args.against})}
    return ctl.out(args, console, body, lambda: _print(console, body["changes"], with_time=False))


def _every_page(client: Client, path: str, params: Mapping[str, str]) -> list[dict]:
    """Every change, page after page, until a page comes back short (more may be added meanwhile)."""
    found: list[dict] = []
    page = 1
    while True:
        body = client.call("GET", path, params={**params, "page": page, "per_page": PAGE})
        found += body["changes"]
        if len(body["changes"]) < PAGE:
            return found
        page += 1


def _print(console: Console, changes: list[dict], with_time: bool) -> None:
    table = Table(*(["at"] if with_time else []), "ip", "change", "port", "before", "after", box=box.SIMPLE)
    for c in changes:
        port = f"{c['port']}/{c['protocol']}" if "port" in c else ""
        after = c["after"] if c["after"] is not None else ""
        if c.get("cve") and c["cve"]["severity"]:
            after = f"{after} ({c['cve']['severity']})" if after else f"({c['cve']['severity']})"
        table.add_row(*([c["at"]] if with_time else []), c["ip"], c["kind"], port,
                      "" if c["before"] is None else c["before"], after)
    console.print(table)
    console.print(f"{len(changes)} change{'' if len(changes) == 1 else 's'}")
