"""What the command lines import before they do anything: each subcommand's heavy modules only
when that subcommand runs. Seen with `python -X importtime` in a fresh interpreter, which names
every module imported; never timed (speed is shown by the figures in the commit, not by a test).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import netscand

ROOT = Path(netscand.__file__).parent.parent
# The daemon's graph: its roots, the API and what only the API serves with.
DAEMON = ("netscand.daemon", "netscand.control", "netscand.api", "starlette", "uvicorn", "sse_starlette",
          "prometheus_client")
SSH = ("asyncssh",)  # only when an SSH host key is fetched
STORE = ("netscand.store", "sqlite_utils", "numpy")  # SQLite, and the numpy sqlite_utils loads


def imported(code: str) -> set[str]:
    """Every module a fresh interpreter imports running `code`, as -X importtime names them."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this tree's netscand, not the installed one
    run = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True,
                         text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    return {line.rpartition("|")[2].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}


def help_of(module: str) -> str:
    return f"from {module} import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0"


@pytest.mark.parametrize("code, absent", [
    pytest.param(help_of("netscand.cli.main"), (*DAEMON, *SSH, *STORE, "netscand.oneshot", "httpx"),
                 id="netscand --help"),
    pytest.param(help_of("netscand.cli.ctl"), (*DAEMON, *SSH, *STORE, "netscand.scan.result", "pyroute2",
                                               "structlog", "cryptography"),
                 id="netscanctl --help"),
    pytest.param("import netscand.cli.ctl", (*DAEMON, *SSH, *STORE, "pyroute2"), id="netscanctl"),
    # What `netscand scan` loads before its scan starts: no API, which it does not serve.
    pytest.param("import netscand.cli.main, netscand.oneshot", (*DAEMON, *SSH, "httpx"), id="netscand scan"),
])
def test_a_command_imports_only_what_it_uses(code: str, absent: tuple[str, ...]) -> None:
    modules = imported(code)
    assert "netscand" in modules  # the parsing saw the imports at all
    loaded = sorted(m for m in modules if any(m == a or m.startswith(f"{a}.") for a in absent))
    assert not loaded, f"imported, but not used by this command: {loaded}"
