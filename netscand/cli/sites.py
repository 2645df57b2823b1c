"""`netscanctl sites`: list, create, rename and delete sites (the daemon's /api/v1/sites; changes
need an admin token over HTTPS)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.table import Table

from netscand.cli import ctl

if TYPE_CHECKING:
    from netscand.cli.ctl import Client

SITES = "/api/v1/sites"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sites", help="sites: where a scan's devices belong")
    sites = p.add_subparsers(dest="sites_command", required=True)
    lst = sites.add_parser("list", help="list sites by name")
    lst.add_argument("--page", type=int, default=1)
    lst.add_argument("--per-page", type=int, default=25)
    sites.add_parser("create", help="create a site").add_argument("name")
    rename = sites.add_parser("rename", help="rename a site")
    rename.add_argument("id")
    rename.add_argument("name")
    sites.add_parser("delete", help="delete a site and its devices (not its scans)").add_argument("id")


def cmd_sites(client: Client, args: argparse.Namespace, console: Console) -> int:
    if args.sites_command == "list":
        body = client.call("GET", SITES, params={"page": args.page, "per_page": args.per_page})
        return ctl._out(args, console, body, lambda: _print_list(console, body))
    if args.sites_command == "delete":
        client.call("DELETE", f"{SITES}/{args.id}")
        if not args.json:
            console.print(f"{args.id}  deleted")
        return 0
    if args.sites_command == "create":
        site = client.call("POST", SITES, json={"name": args.name})
    else:
        site = client.call("PATCH", f"{SITES}/{args.id}", json={"name": args.name})
    return ctl._out(args, console, site, lambda: console.print(f"{site['id']}  {site['name']}"))


def _print_list(console: Console, body: dict) -> None:
    table = Table("id", "name", "created", "updated", box=box.SIMPLE)
    for s in body["sites"]:
        table.add_row(s["id"], s["name"], s["created_at"], s["updated_at"])
    console.print(table)
    console.print(f"page {body['page']}, {len(body['sites'])} of {body['total']}")
