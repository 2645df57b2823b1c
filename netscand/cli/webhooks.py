"""`netscanctl webhooks`: create, list, show, change and delete webhooks, and read a webhook's
delivery log (the daemon's /api/v1/webhooks; an admin token over HTTPS)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.table import Table

from netscand.cli import ctl
from netscand.statuses import DELIVERY_STATUSES

if TYPE_CHECKING:
    from netscand.cli.ctl import Client

HOOKS = "/api/v1/webhooks"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    hooks = ctl.add_group(sub, "webhooks", "webhooks: signed HTTP POSTs of the daemon's events",
                          "list webhooks, newest first")
    create = hooks.add_parser("create", help="create a webhook; its secret is shown this once")
    # Not `url`: that is the global --url, the daemon's own.
    create.add_argument("hook_url", metavar="HOOK_URL",
                        help="http(s) URL inside the daemon's webhooks.allowed_destinations")
    create.add_argument("--event", action="append", required=True, dest="events", metavar="PATTERN",
                        help='event type or family to send, e.g. "change.*", "scan.state", "*" (repeatable)')
    # Never on the command line, where ps and the shell's history would show it.
    secret = create.add_mutually_exclusive_group()
    secret.add_argument("--secret-stdin", action="store_true",
                        help="read the whsec_... signing secret from standard input (default: the daemon makes one)")
    secret.add_argument("--secret-file", type=Path, metavar="FILE", help="read the whsec_... signing secret from FILE")
    hooks.add_parser("show", help="a webhook").add_argument("id")
    update = hooks.add_parser("update", help="change a webhook's URL, events or state")
    update.add_argument("id")
    update.add_argument("--hook-url", metavar="HOOK_URL", help="its new URL (not --url: that names the daemon)")
    update.add_argument("--event", action="append", dest="events", metavar="PATTERN",
                        help="replaces its patterns (repeatable)")
    state = update.add_mutually_exclusive_group()
    state.add_argument("--enable", action="store_true", default=None, dest="enabled")
    state.add_argument("--disable", action="store_false", default=None, dest="enabled")
    hooks.add_parser("delete", help="delete a webhook and its delivery log").add_argument("id")
    log = hooks.add_parser("deliveries", help="a webhook's delivery log, newest first")
    log.add_argument("id")
    log.add_argument("--status", choices=DELIVERY_STATUSES)
    ctl.add_paging(log)


def cmd_webhooks(client: Client, args: argparse.Namespace, console: Console) -> int:
    return ACTIONS[args.webhooks_command](client, args, console)


def _list(client: Client, args: argparse.Namespace, console: Console) -> int:
    body = client.call("GET", HOOKS, params=ctl.paging(args))

    def human() -> None:
        table = Table("id", "url", "events", "enabled", "created", box=box.SIMPLE)
        for h in body["webhooks"]:
            table.add_row(h["id"], h["url"], " ".join(h["events"]), "yes" if h["enabled"] else "no", h["created_at"])
        ctl.print_page(console, table, body, "webhooks")
    return ctl.out(args, console, body, human)


def _create(client: Client, args: argparse.Namespace, console: Console) -> int:
    secret = _secret(args)
    request = {"url": args.hook_url, "events": args.events} | ({"secret": secret} if secret else {})
    hook = client.call("POST", HOOKS, json=request)

    def human() -> None:
        _print(console, hook)
        console.print("the secret is not shown again: give it to the receiver now")
    return ctl.out(args, console, hook, human)


def _secret(args: argparse.Namespace) -> str | None:
    """The secret from standard input or its file, its line end dropped; None for none given."""
    if args.secret_stdin:
        text, source = sys.stdin.read(), "standard input"
    elif args.secret_file is not None:
        try:
            text, source = args.secret_file.read_text(), str(args.secret_file)
        except (OSError, UnicodeDecodeError) as exc:
            raise ctl.CtlError(f"cannot read the secret from {args.secret_file}: {exc}") from None
    else:
        return None
    if not text.strip():
        raise ctl.CtlError(f"no secret in {source}: give one whsec_... line, or leave the option out")
    return text.strip()


def _show(client: Client, args: argparse.Namespace, console: Console) -> int:
    return ctl.show(client, args, console, f"{HOOKS}/{args.id}", _print)


def _update(client: Client, args: argparse.Namespace, console: Console) -> int:
    change = {k: v for k, v in (("url", args.hook_url), ("events", args.events), ("enabled", args.enabled))
              if v is not None}
    if not change:
        raise ctl.CtlError("nothing to change: give --hook-url, --event, --enable or --disable")
    hook = client.call("PATCH", f"{HOOKS}/{args.id}", json=change)
    return ctl.out(args, console, hook, lambda: _print(console, hook))


def _delete(client: Client, args: argparse.Namespace, console: Console) -> int:
    return ctl.delete(client, args, console, f"{HOOKS}/{args.id}")


def _deliveries(client: Client, args: argparse.Namespace, console: Console) -> int:
    params = ctl.paging(args)
    if args.status:
        params["status"] = args.status
    body = client.call("GET", f"{HOOKS}/{args.id}/deliveries", params=params)

    def human() -> None:
        table = Table("event", "type", "status", "attempts", "answer", "next attempt", "error", box=box.SIMPLE)
        for d in body["deliveries"]:
            table.add_row(str(d["event_seq"]), d["type"], d["status"], str(d["attempts"]),
                          str(d["last_status_code"] or "-"), d["next_attempt_at"] or "", d["last_error"] or "")
        ctl.print_page(console, table, body, "deliveries")
    return ctl.out(args, console, body, human)


def _print(console: Console, hook: dict) -> None:
    for key, value in hook.items():
        console.print(f"{key:>12}  {' '.join(value) if isinstance(value, list) else value}")


ACTIONS: dict[str, Callable[[Client, argparse.Namespace, Console], int]] = {
    "list": _list, "create": _create, "show": _show, "update": _update, "delete": _delete,
    "deliveries": _deliveries,
}
