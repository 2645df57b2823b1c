"""`netscanctl`: the client of the daemon's REST API.

Over the Unix socket by default (no token needed: the socket's permissions are the
authorization), or over HTTPS with --url and --token. Tables for people, --json for scripts;
an API error is one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import time
from collections.abc import Callable, Iterator, Mapping

import httpx
import httpx_sse
import orjson
from rich import box
from rich.console import Console
from rich.table import Table

from netscand import __version__
from netscand.cli import (
    changes,
    coverage,
    devices,
    export,
    findings,
    schedules,
    sites,
    webhooks,
)
from netscand.cli.progress import progress_bar
from netscand.scan.profiles import (
    DEFAULT_LEVEL,
    DEFAULT_PROFILE,
    LEVEL_NAMES,
    PROFILE_NAMES,
    accepting,
    taking,
)
from netscand.statuses import FINISHED, STATUSES

DEFAULT_SOCKET = "/run/netscand/netscand.sock"
POLL = 0.5
RESULT_PAGE = 1000  # devices per request: the API's largest page


class CtlError(Exception):
    pass


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netscanctl", description="Client for the netscand REST API.")
    p.add_argument("--version", action="version", version=f"netscanctl {__version__}")
    p.add_argument("--socket", default=os.environ.get("NETSCAND_SOCKET", DEFAULT_SOCKET),
                   help=f"daemon's Unix socket (default {DEFAULT_SOCKET})")
    p.add_argument("--url", default=os.environ.get("NETSCAND_URL"),
                   help="HTTPS base URL, e.g. https://scanner:8443 (instead of the socket)")
    p.add_argument("--token", default=os.environ.get("NETSCAND_TOKEN"), help="bearer token for --url")
    p.add_argument("--cacert", help="CA or self-signed certificate to trust for --url")
    p.add_argument("--insecure", action="store_true", help="do not verify the HTTPS certificate")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    sub = p.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a scan")
    add_start_options(start)
    start.add_argument("--wait", action="store_true", help="show progress until the scan ends, then its result")
    for name in ("status", "result", "stop", "watch"):
        sub.add_parser(name, help=f"{name} of a scan").add_argument("id")
    sub.add_parser("delete", help="delete a finished scan and its result").add_argument("id")
    sub.add_parser("rematch", help="match a finished scan's CVEs against the CVE data of now, "
                                   "then show its result").add_argument("id")
    lst = sub.add_parser("list", help="list scans, newest first")
    lst.add_argument("--status", choices=STATUSES)
    lst.add_argument("--site-id")
    add_paging(lst)
    webhooks.add_parsers(sub)
    schedules.add_parsers(sub)
    sites.add_parsers(sub)
    devices.add_parsers(sub)
    changes.add_parsers(sub)
    export.add_parsers(sub)
    export.add_format_option(sub.choices["result"])
    return p


def add_start_options(start: argparse.ArgumentParser) -> None:
    """A start request's arguments (read by start_body): `start`'s, and a schedule's."""
    start.add_argument("target", nargs="+", help="addresses, CIDRs, ranges or hostnames")
    start.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILE_NAMES)
    start.add_argument("--ports", help=f"for {taking('ports').name}: 22,80,1000-2000")
    start.add_argument("--udp-ports", help=f"for {taking('udp_ports').name}: UDP ports, e.g. 53,123,161")
    start.add_argument("--profiling", action="store_true", default=None,
                       help=f"for {taking('enable_profiling').name}: device profiling and service detection")
    start.add_argument("--cve-match", action="store_true", default=None,
                       help=f"for {taking('enable_cve_match').name}: match services against the CVE data")
    start.add_argument("--stealth-level", choices=LEVEL_NAMES,
                       help=f"for {taking('stealth_level').name}: its pace (default {DEFAULT_LEVEL})")
    paced = " or ".join(accepting("host_gap_ms"))
    start.add_argument("--host-gap-ms", type=int, help=f"for {paced}: each host one probe per this many ms at most")
    start.add_argument("--jitter-ms", type=int, help="with per-host pacing: a random 0 to this many ms more per wait")
    start.add_argument("--source-ports", help="with per-host pacing: source port range LO-HI, e.g. 32768-60999")
    start.add_argument("--site-id")


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        if args.url:
            headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
            verify: bool | ssl.SSLContext = True
            if args.insecure:
                verify = False
            elif args.cacert:
                verify = ssl.create_default_context(cafile=args.cacert)
            self.where = args.url
            self.http = httpx.Client(base_url=args.url, headers=headers, verify=verify, timeout=30)
        else:
            self.where = args.socket
            self.http = httpx.Client(base_url="http://netscand", timeout=30,
                                     transport=httpx.HTTPTransport(uds=args.socket))

    def call(self, method: str, path: str, *, json: object = None,
             params: Mapping[str, str | int] | None = None) -> dict:
        try:
            r = self.http.request(method, path, json=json, params=params)
        except httpx.ConnectError as exc:
            raise CtlError(f"cannot connect to {self.where}: {exc}") from None
        except httpx.HTTPError as exc:
            raise CtlError(f"request to {self.where} failed: {exc}") from None
        return self.answer(r)

    def answer(self, r: httpx.Response) -> dict:
        """A response's JSON body, or a CtlError saying what the problem was."""
        if r.status_code == 204:
            return {}
        try:
            body = r.json()
        except ValueError:
            raise CtlError(f"{r.status_code} from {self.where}: not JSON") from None
        if r.status_code >= 400:
            detail = body.get("detail") if isinstance(body, dict) else None
            title = body.get("title", "error") if isinstance(body, dict) else "error"
            raise CtlError(f"{r.status_code} {title}" + (f": {detail}" if detail else ""))
        return body


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Piped output keeps whole lines rather than folding tables to 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    try:
        client = Client(args)
        return COMMANDS[args.command](client, args, console)
    except CtlError as exc:
        print(f"netscanctl: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def out(args: argparse.Namespace, console: Console, body: dict, human: Callable[[], None]) -> int:
    """The API's JSON with --json, else `human`'s tables."""
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        human()
    return 0


def add_group(sub: argparse._SubParsersAction, name: str, what: str, listing: str) -> argparse._SubParsersAction:
    """`netscanctl NAME list|...`: the group's subcommands (in args.NAME_command), its `list` paged."""
    group = sub.add_parser(name, help=what).add_subparsers(dest=f"{name}_command", required=True)
    add_paging(group.add_parser("list", help=listing))
    return group


def add_paging(p: argparse.ArgumentParser) -> None:
    """A listing's --page and --per-page (read by paging())."""
    p.add_argument("--page", type=int, default=1)
    p.add_argument("--per-page", type=int, default=25)


def paging(args: argparse.Namespace) -> dict[str, str | int]:
    """The query parameters of add_paging()'s options."""
    return {"page": args.page, "per_page": args.per_page}


def print_page(console: Console, table: Table, body: dict, key: str) -> None:
    """A listing's page as `table`, and under it which page it is and how many of all its `key`
    items it shows."""
    console.print(table)
    console.print(f"page {body['page']}, {len(body[key])} of {body['total']}")


def delete(client: Client, args: argparse.Namespace, console: Console, path: str) -> int:
    """DELETE `path` (args.id's), saying so unless --json (the API answers 204, nothing to print)."""
    client.call("DELETE", path)
    if not args.json:
        console.print(f"{args.id}  deleted")
    return 0


def show(client: Client, args: argparse.Namespace, console: Console, path: str,
         human: Callable[[Console, dict], None]) -> int:
    """GET `path` and print it: as `human` has it, or its JSON."""
    body = client.call("GET", path)
    return out(args, console, body, lambda: human(console, body))


def start_body(args: argparse.Namespace) -> dict:
    """The start request add_start_options' arguments make."""
    body: dict = {"target": args.target[0] if len(args.target) == 1 else args.target,
                  "profile": args.profile}
    for field in ("ports", "udp_ports"):
        if text := getattr(args, field):
            body[field] = [int(p) if p.strip().isdigit() else p.strip() for p in text.split(",")]
    for flag, field in (("profiling", "enable_profiling"), ("cve_match", "enable_cve_match")):
        if getattr(args, flag):
            body[field] = True
    for field in ("stealth_level", "host_gap_ms", "jitter_ms", "source_ports"):  # the API checks them
        if (value := getattr(args, field)) is not None:
            body[field] = value
    if args.site_id:
        body["site_id"] = args.site_id
    return body


def cmd_start(client: Client, args: argparse.Namespace, console: Console) -> int:
    scan = client.call("POST", "/api/v1/scans/start", json=start_body(args))
    if args.wait:
        _watch(client, scan["id"], console, quiet=args.json)
        return cmd_result(client, argparse.Namespace(**{**vars(args), "id": scan["id"]}), console)
    return out(args, console, scan, lambda: console.print(f"{scan['id']}  {scan['status']}"))


def cmd_status(client: Client, args: argparse.Namespace, console: Console) -> int:
    scan = client.call("GET", f"/api/v1/scans/{args.id}")
    return out(args, console, scan, lambda: _print_status(console, scan))


def cmd_stop(client: Client, args: argparse.Namespace, console: Console) -> int:
    scan = client.call("POST", f"/api/v1/scans/{args.id}/stop")
    return out(args, console, scan, lambda: _print_status(console, scan))


def cmd_result(client: Client, args: argparse.Namespace, console: Console) -> int:
    if getattr(args, "format", "json") != "json":  # `start --wait` shows its result as json does
        return export.cmd_result(client, args, console)
    res = _whole_result(client, args.id)
    return out(args, console, res, lambda: _print_result(console, res))


def cmd_rematch(client: Client, args: argparse.Namespace, console: Console) -> int:
    client.call("POST", f"/api/v1/scans/{args.id}/rematch", params={"per_page": 1})
    return cmd_result(client, args, console)


def _whole_result(client: Client, scan_id: str) -> dict:
    """The result with every device: its pages fetched in turn and joined (without the page
    fields). A scan still running may gain devices meanwhile; a page that comes back empty ends
    it, so a daemon that keeps counting more never keeps this asking."""
    res = client.call("GET", f"/api/v1/scans/{scan_id}/result", params={"per_page": RESULT_PAGE})
    devices = list(res["devices"])
    page = 1
    while len(devices) < res["devices_found"]:
        page += 1
        more = client.call("GET", f"/api/v1/scans/{scan_id}/result", params={"page": page, "per_page": RESULT_PAGE})
        if not more["devices"]:
            break
        devices += more["devices"]
    res = {k: v for k, v in res.items() if k not in ("page", "per_page")}
    return res | {"devices": devices}


def cmd_delete(client: Client, args: argparse.Namespace, console: Console) -> int:
    return delete(client, args, console, f"/api/v1/scans/{args.id}")


def cmd_list(client: Client, args: argparse.Namespace, console: Console) -> int:
    params = paging(args)
    if args.status:
        params["status"] = args.status
    if args.site_id:
        params["site_id"] = args.site_id
    body = client.call("GET", "/api/v1/scans", params=params)

    def human() -> None:
        table = Table("id", "status", "profile", "target", "progress", "hosts", "open", "created", box=box.SIMPLE)
        for s in body["scans"]:
            target = s["target"] if isinstance(s["target"], str) else ",".join(s["target"])
            table.add_row(s["id"], s["status"], s["profile"], target, f"{s['progress_percent']}%",
                          str(s["hosts_found"]), str(s["ports_found"]), s.get("created_at") or "")
        print_page(console, table, body, "scans")
    return out(args, console, body, human)


def cmd_watch(client: Client, args: argparse.Namespace, console: Console) -> int:
    scan = _watch(client, args.id, console, quiet=args.json)
    return out(args, console, scan, lambda: _print_status(console, scan))


def _watch(client: Client, scan_id: str, console: Console, quiet: bool) -> dict:
    """The scan's progress from its live events until it ends, then its status. A stream cut
    short (the connection lost) is resumed after the last event seen."""
    last = 0
    with progress_bar(quiet) as bar:
        task = bar.add_task(scan_id[:8], total=100, found="")
        while True:
            before = last
            for event in _events(client, f"/api/v1/scans/{scan_id}/events", last):
                last = event["seq"]
                data = event["data"]
                if event["type"] == "scan.progress":
                    bar.update(task, completed=data["progress_percent"],
                               found=f"{data['hosts_found']} hosts, {data['ports_found']} open")
                elif event["type"] == "scan.state":
                    bar.update(task, description=f"{scan_id[:8]} {data['status']}")
            scan = client.call("GET", f"/api/v1/scans/{scan_id}")
            if scan["status"] in FINISHED:
                bar.update(task, completed=scan["progress_percent"])
                return scan
            if last == before:
                raise CtlError(f"the events of scan {scan_id} stopped before the scan ended")
            time.sleep(POLL)


def _events(client: Client, path: str, after: int) -> Iterator[dict]:
    """The events of an SSE stream of the API after seq `after`, until the stream ends or
    breaks."""
    try:
        with httpx_sse.connect_sse(client.http, "GET", path, headers={"Last-Event-ID": str(after)}) as source:
            if source.response.status_code != 200:
                source.response.read()
                client.answer(source.response)
            for sse in source.iter_sse():
                yield orjson.loads(sse.data)
    except httpx.ConnectError as exc:
        raise CtlError(f"cannot connect to {client.where}: {exc}") from None
    except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout):
        return  # the caller resumes from the last event it got


def _print_status(console: Console, scan: dict) -> None:
    for key, value in scan.items():
        if value is not None:
            console.print(f"{key:>20}  {value}")


def _print_result(console: Console, res: dict) -> None:
    console.print(f"{res['status']}: {res['devices_found']} devices, {res['open_ports_total']} open ports, "
                  f"{res['duration_seconds']} s")
    if "coverage" in res:
        console.print(coverage.summary(res["coverage"]))
    # Only the columns something was found for: a quick scan has no hostnames or versions.
    fields = [f for f in ("mac", "hostname", "vendor", "os_guess") if any(d.get(f) for d in res["devices"])]
    versions = any(p.get("product") for d in res["devices"] for p in d["ports"])
    table = Table("ip", *fields, "port", "state", "service", *(["version"] if versions else []),
                  box=box.SIMPLE)
    for d in res["devices"]:
        first = [d["ip"], *(d.get(f) or "" for f in fields)]
        for p in d["ports"] or [{}]:
            row = [*first, f"{p['port']}/{p['protocol']}" if p else "", p.get("state", ""), p.get("service") or ""]
            if versions:
                row.append(" ".join(x for x in (p.get("product"), p.get("version")) if x))
            table.add_row(*row)
            first = [""] * len(first)
        for protocol, key in (("tcp", "not_shown"), ("udp", "not_shown_udp")):
            for state, count in d.get(key, {}).items():
                table.add_row(*first, protocol, f"{count} {state}", _not_shown(d, state))
    console.print(table)
    for d in res["devices"]:
        if doubt := coverage.doubtful(d):
            console.print(f"{d['ip']}: {doubt}")
    _print_cves(console, res)


def _print_cves(console: Console, res: dict) -> None:
    """Each device's CVEs, most severe first; then the CVE data they were matched against."""
    data = res.get("cve_data")
    if data is None:
        return  # the scan did not match CVEs
    for d in res["devices"]:
        found = [(f"{p['port']}/{p['protocol']}", f) for p in d["ports"] for f in p.get("cves", ())]
        if found:
            console.print(_cve_table(d, found))
    console.print(findings.data_line(data))


def _cve_table(device: dict, found: list[tuple[str, dict]]) -> Table:
    counts = ", ".join(f"{n} {severity}" for severity, n in device["cve_counts"].items() if n)
    table = Table("severity", "cve", "cvss", "port", "status", box=box.SIMPLE,
                  title=f"{device['ip']}: {counts or 'nothing vulnerable'}")
    for port, f in findings.by_severity(found):
        table.add_row(f["severity"] or "-", f["id"], str(f["cvss"] or "-"), port, findings.status_text(f))
    return table


def _not_shown(device: dict, state: str) -> str:
    # A tarpit's "open" ports are its own SYN-ACKs to everything, not services: say so.
    return "tarpit: answers every port" if state == "open" and device.get("tarpit") else "not shown"


COMMANDS: dict[str, Callable[[Client, argparse.Namespace, Console], int]] = {
    "start": cmd_start, "status": cmd_status, "result": cmd_result, "stop": cmd_stop,
    "list": cmd_list, "watch": cmd_watch, "delete": cmd_delete, "rematch": cmd_rematch,
    "webhooks": webhooks.cmd_webhooks, "schedules": schedules.cmd_schedules, "export": export.cmd_export,
    "sites": sites.cmd_sites, "devices": devices.cmd_devices, "device": devices.cmd_device,
    "changes": changes.cmd_changes, "diff": changes.cmd_diff,
}
