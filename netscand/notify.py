"""How the daemon tells others about its state: systemd through sd_notify(3), in a few lines of
stdlib (datagrams to the socket named in $NOTIFY_SOCKET), and `netscand reload` through a
receipt file.

Without NOTIFY_SOCKET (run by hand, in tests without it) every notification is a no-op, so
callers never have to ask whether systemd is there.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path


class Notifier:
    def __init__(self, environ: MutableMapping[str, str] = os.environ) -> None:
        # Taken out of the environment (sd_notify's unset_environment): with NotifyAccess=main
        # systemd ignores the children, and nothing they might exec should talk to it either.
        address = environ.pop("NOTIFY_SOCKET", "")
        usec = environ.pop("WATCHDOG_USEC", "")
        pid = environ.pop("WATCHDOG_PID", "")
        # An abstract socket is written '@name'; its real address starts with a NUL byte.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) if address else None
        # WATCHDOG_PID names the process the watchdog is for; when it is another, it isn't ours.
        mine = not pid or pid == str(os.getpid())
        self.watchdog = int(usec) / 1e6 if usec.isdigit() and int(usec) and mine else None

    def send(self, *assignments: str) -> None:
        """Send 'KEY=value' lines in one datagram."""
        if self.sock is None:
            return
        try:
            self.sock.sendto("\n".join(assignments).encode(), self.address)
        except OSError:
            pass  # systemd restarting or gone: a lost status line must never stop the daemon

    def reloading(self) -> None:
        # MONOTONIC_USEC is what systemd 253's Type=notify-reload requires with RELOADING=1;
        # 252 ignores it.
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


@dataclass(frozen=True)
class Receipt:
    """The daemon's answer to `netscand reload`, a file in its state directory: which process
    (its start time tells a reused pid apart), reloads asked for (SIGHUPs) and done (told to
    systemd with READY=1), and why the last one failed."""

    pid: int
    started: int
    requested: int
    done: int
    error: str

    def write(self, path: Path) -> None:
        # Replaced whole, so a reader never sees half of it.
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> Receipt | None:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    def alive(self) -> bool:
        return start_time(self.pid) == self.started


def start_time(pid: int) -> int | None:
    """When a process started (clock ticks since boot), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name before ")" may hold spaces
