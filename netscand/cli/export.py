"""`netscanctl export ID --format F [-o FILE]` and `netscanctl result ID --format F`: a scan's
whole result as nmap XML, CSV or JSON Lines, copied from the API as it streams (any size, in
bounded memory, bytes as they are).

`result --format` writes to stdout, for pipes; `export` writes a file (stdout with `-o -`),
which appears whole or not at all: it is written beside its name and renamed once complete, so
an export cut short never leaves a file that looks finished.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import BinaryIO

import httpx
from rich.console import Console

from netscand.cli import ctl
from netscand.scan.formats import FORMATS

FORMAT_HELP = ("nmap-xml: nmap's XML output (ndiff, python-libnmap and nmap's importers read it); "
               "csv: one port per line; jsonl: one device per line")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a scan's whole result as nmap XML, CSV or JSON Lines")
    p.add_argument("id")
    p.add_argument("--format", required=True, choices=tuple(FORMATS), help=FORMAT_HELP)
    p.add_argument("-o", "--output", default="-", help="the file to write (default -: stdout)")


def add_format_option(result: argparse.ArgumentParser) -> None:
    """`result`'s --format: json (the default) is the table, or --json the API's document."""
    result.add_argument("--format", default="json", choices=("json", *FORMATS),
                        help=f"json: the table (or with --json the API's JSON); {FORMAT_HELP}; "
                             "written to stdout as it comes")


def cmd_export(client: ctl.Client, args: argparse.Namespace, console: Console) -> int:
    if args.output == "-":
        return cmd_result(client, args, console)
    target = Path(args.output)
    try:
        write_whole(target, partial(copy_result, client, args.id, args.format))
    except OSError as exc:
        raise ctl.CtlError(f"cannot write {target}: {exc.strerror or exc}") from None
    return 0


def write_whole(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """`write`'s bytes as the file `target`, which appears only once they are all on disk: a
    crash after the rename must not leave a file that looks whole but is not."""
    part = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False)
    try:
        with part:
            write(part)
            part.flush()
            os.fsync(part.fileno())
        os.chmod(part.name, 0o666 & ~_umask())
        os.replace(part.name, target)
    except BaseException:
        os.unlink(part.name)
        raise


def cmd_result(client: ctl.Client, args: argparse.Namespace, console: Console) -> int:
    return to_stdout(partial(copy_result, client, args.id, args.format))


def to_stdout(write: Callable[[BinaryIO], None]) -> int:
    """`write`'s bytes on stdout, for pipes: a reader gone early is one line on stderr."""
    try:
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more can be said on stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise ctl.CtlError("the output was closed before the export ended") from None
    return 0


def copy_result(client: ctl.Client, scan_id: str, fmt: str, out: BinaryIO) -> None:
    """The scan's result in `fmt`, copied to `out` chunk by chunk as the API sends it."""
    copy_stream(client, f"/api/v1/scans/{scan_id}/result", {"format": fmt}, out)


def copy_stream(client: ctl.Client, path: str, params: Mapping[str, str | int], out: BinaryIO) -> None:
    """GET `path`'s export (params name its format), copied to `out` chunk by chunk as it comes."""
    try:
        with client.http.stream("GET", path, params=params) as r:
            if r.status_code != 200:
                r.read()
                client.answer(r)  # raises the API's problem as a CtlError
            for chunk in r.iter_bytes():
                out.write(chunk)
    except httpx.ConnectError as exc:
        raise ctl.CtlError(f"cannot connect to {client.where}: {exc}") from None
    except httpx.HTTPError as exc:
        raise ctl.CtlError(f"the export from {client.where} was cut short: {exc}") from None


def _umask() -> int:
    # A file written through a temporary one gets the mode a plain create would have given it.
    mask = os.umask(0)
    os.umask(mask)
    return mask
