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
    sites = ctl.add_group(sub, "sites", "sites: where a scan's devices belong", "list sites by name")
    sites.add_parser("create", help="create a site").add_argument("name")
    rename = sites.add_parser("rename", help="rename a site")
    rename.add_argument("id")
    rename.add_argument("name")
    sites.add_parser("delete", help="delete a site and its devices (not its scans)").add_argument("id")


def cmd_sites(client: Client, args: argparse.Namespace, console: Console) -> int:
    if args.sites_command == "list":
        body = client.call("GET", SITES, params=ctl.paging(args))
        return ctl.out(args, console, body, lambda: _print_list(console, body))
    if args.sites_command == "delete":
        return ctl.delete(client, args, console, f"{SITES}/{args.id}")
    if args.sites_command == "create":
        site = client.call("POST", SITES, json={"name": args.name})
    else:
        site = client.call("PATCH", f"{SITES}/{args.id}", json={"name": args.name})
    return ctl.out(args, console, site, lambda: console.print(f"{site['id']}  {site['name']}"))


def _print_list(console: Console, body: dict) -> None:
    table = Table("id", "name", "created", "updated", box=box.SIMPLE)
    for s in body["sites"]:
        table.add_row(s["id"], s["name"], s["created_at"], s["updated_at"])
    ctl.print_page(console, table, body, "sites")
