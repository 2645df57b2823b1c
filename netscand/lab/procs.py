"""Starting, recognising and stopping the lab's helper processes (services, responders, relay,
the hostile hosts' servers and frame attacker, the detector lab's log collector, and a test's
webhook receiver).

A helper is recognised by its command line, `python -m netscand.lab.<helper> STATEFILE ...`,
never by a pid alone: a pid read from an old state file may belong to someone else by now.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from netscand.lab import truth
from netscand.lab.errors import LabError

T = TypeVar("T")

HELPERS = ("netscand.lab.services", "netscand.lab.relay", "netscand.lab.responders",
           "netscand.lab.hostile_services", "netscand.lab.attacker", "netscand.lab.detector_logs",
           "netscand.lab.receiver")
READY = b"ready\n"


def spawn(module: str, state_file: Path, args: list[str], log: Path, timeout: float = 15) -> int:
    """Start a helper in its own session and wait until it says it is ready; return its pid."""
    # The helper must run this very code, even when netscand is used from a source tree.
    source_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (source_root, os.environ.get("PYTHONPATH"))))}
    with open(log, "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, str(state_file), *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file, env=env,
            start_new_session=True,  # a Ctrl-C meant for the CLI or pytest must not reach it
        )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else b""
    proc.stdout.close()
    if line != READY:
        stop([proc.pid])
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        raise LabError(f"{module} did not start: {tail[0] if tail else 'no output'} (log: {log})")
    return proc.pid


def serve_lab(argv: list[str], open_sockets: Callable[[dict[str, Any]], T], serve: Callable[[T], None]) -> int:
    """A helper's main: read the lab's state file (argv[0]), open its sockets, say ready, serve."""
    state = truth.read(Path(argv[0]))
    if state is None:
        print(f"no state file {argv[0]}", file=sys.stderr)
        return 1
    sockets = open_sockets(state)
    signal_ready()
    serve(sockets)
    return 0


def signal_ready() -> None:
    """Called by a helper once it serves: tells `spawn`, then lets go of the pipe."""
    os.write(1, READY)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def is_helper(pid: int, state_file: Path) -> bool:
    argv = _cmdline(pid)
    return len(argv) > 3 and argv[1] == "-m" and argv[2] in HELPERS and argv[3] == str(state_file)


def find_helpers(state_file: Path) -> list[int]:
    """Helpers of this lab still running, even if its state file never got their pids."""
    return [int(d) for d in os.listdir("/proc") if d.isdigit() and is_helper(int(d), state_file)]


def _gone(pid: int) -> bool:
    try:
        # Reap it if it is our child; otherwise a zombie waiting for its parent counts as gone.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def stop(pids: list[int], grace: float = 2.0) -> list[int]:
    """SIGTERM, then SIGKILL whatever is still alive after the grace period; return survivors."""
    pending = [pid for pid in pids if pid != os.getpid()]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        for pid in pending:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while pending and time.monotonic() < deadline:
            pending = [pid for pid in pending if not _gone(pid)]
            if pending:
                time.sleep(0.01)
        if not pending:
            break
    return pending
