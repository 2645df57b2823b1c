"""`netscanctl schedules`: create, list, show, enable, disable and delete schedules (the daemon's
/api/v1/schedules), each a start request and the cron times it runs at."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.table import Table

from netscand.cli import ctl
from netscand.scan.schedule_choices import DELIVERIES, MISSED_POLICIES

if TYPE_CHECKING:
    from netscand.cli.ctl import Client

SCHEDULES = "/api/v1/schedules"
# What `show` lists of a schedule besides its start request, in this order.
SHOWN = ("id", "name", "cron", "enabled", "missed", "deliver", "next_due", "last_due", "created_at")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    schedules = ctl.add_group(sub, "schedules", "schedules: scans started at cron times",
                              "list schedules, newest first")
    schedules.add_parser("show", help="a schedule and its latest runs").add_argument("id")
    create = schedules.add_parser("create", help="create a schedule: NAME, --cron, and a start's arguments")
    create.add_argument("name")
    create.add_argument("--cron", required=True, help='five fields in UTC, e.g. "0 2 * * *"')
    create.add_argument("--missed", choices=MISSED_POLICIES, default=MISSED_POLICIES[0],
                        help="due times missed while the daemon was down: run one scan for them, or skip them")
    create.add_argument("--deliver", choices=DELIVERIES, default=DELIVERIES[0],
                        help="what its scans' webhooks get: every event, or only the changes and the end")
    create.add_argument("--disabled", action="store_true", help="create it disabled")
    ctl.add_start_options(create)
    for name, what in (("enable", "start its scans again"), ("disable", "start none until enabled"),
                       ("delete", "delete it and its runs (its scans stay)")):
        schedules.add_parser(name, help=f"{name} a schedule: {what}").add_argument("id")


def cmd_schedules(client: Client, args: argparse.Namespace, console: Console) -> int:
    return ACTIONS[args.schedules_command](client, args, console)


def _list(client: Client, args: argparse.Namespace, console: Console) -> int:
    body = client.call("GET", SCHEDULES, params=ctl.paging(args))

    def human() -> None:
        table = Table("id", "name", "cron", "target", "profile", "enabled", "next due", "last due", box=box.SIMPLE)
        for s in body["schedules"]:
            table.add_row(s["id"], s["name"], s["cron"], _target(s), s["profile"], "yes" if s["enabled"] else "no",
                          s["next_due"] or "", s["last_due"] or "")
        ctl.print_page(console, table, body, "schedules")
    return ctl.out(args, console, body, human)


def _show(client: Client, args: argparse.Namespace, console: Console) -> int:
    return ctl.show(client, args, console, f"{SCHEDULES}/{args.id}", _print)


def _create(client: Client, args: argparse.Namespace, console: Console) -> int:
    body = ctl.start_body(args) | {"name": args.name, "cron": args.cron, "missed": args.missed,
                                   "deliver": args.deliver, "enabled": not args.disabled}
    schedule = client.call("POST", SCHEDULES, json=body)
    return ctl.out(args, console, schedule, lambda: _print(console, schedule))


def _enabler(enabled: bool) -> Callable[[Client, argparse.Namespace, Console], int]:
    def change(client: Client, args: argparse.Namespace, console: Console) -> int:
        schedule = client.call("PATCH", f"{SCHEDULES}/{args.id}", json={"enabled": enabled})
        return ctl.out(args, console, schedule, lambda: _print(console, schedule))
    return change


def _delete(client: Client, args: argparse.Namespace, console: Console) -> int:
    return ctl.delete(client, args, console, f"{SCHEDULES}/{args.id}")


def _print(console: Console, schedule: dict) -> None:
    """Its own fields, then the start request's that are given, then its runs."""
    for key in SHOWN:
        console.print(f"{key:>16}  {schedule[key] if schedule[key] is not None else '-'}")
    for key, value in schedule.items():
        if key not in SHOWN and key not in ("runs", "updated_at") and value is not None:
            console.print(f"{key:>16}  {_target(schedule) if key == 'target' else value}")
    runs = schedule.get("runs") or []
    if runs:
        table = Table("due", "outcome", "missed", "scan", "detail", box=box.SIMPLE, title="latest runs")
        for r in runs:
            table.add_row(r["due_at"], r["outcome"], str(r["missed"] or ""), r["scan_id"] or "", r["detail"] or "")
        console.print(table)


def _target(schedule: dict) -> str:
    target = schedule["target"]
    return target if isinstance(target, str) else ",".join(target)


ACTIONS: dict[str, Callable[[Client, argparse.Namespace, Console], int]] = {
    "list": _list, "show": _show, "create": _create, "enable": _enabler(True), "disable": _enabler(False),
    "delete": _delete,
}
