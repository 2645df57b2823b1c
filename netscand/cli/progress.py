"""The live progress bar of both commands: netscanctl's while it waits for a scan of the daemon,
`netscand scan`'s while it runs one."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn


def progress_bar(quiet: bool = False) -> Progress:
    """On stderr, and gone when it stops, leaving the terminal to the result. Shown on a terminal
    only: CI logs and pipes keep plain, stable lines (what went wrong), whatever rich would
    guess from the environment."""
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TextColumn("{task.fields[found]}"), TimeRemainingColumn())
    return Progress(*columns, console=Console(stderr=True), disable=quiet or not sys.stderr.isatty(),
                    transient=True)
