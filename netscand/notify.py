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
import stat
import time
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from netscand import files

RECEIPT_MODE = 0o644  # a pid and counters: `netscand reload` may run as any user who may signal
MAX_RECEIPT = 4096  # a receipt takes about 100 bytes


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
        files.write_whole(path, json.dumps(asdict(self)).encode(), RECEIPT_MODE)

    @classmethod
    def read(cls, path: Path) -> Receipt | None:
        """The receipt, or None when there is none or it is not one. The daemon's user may write
        anything there, root may be the reader: no link is followed, no FIFO waited on, no more
        than MAX_RECEIPT bytes read, and no value of the wrong type taken."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            data = json.loads(os.read(fd, MAX_RECEIPT))
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)
        types = {f.name: str if f.name == "error" else int for f in fields(cls)}
        if not isinstance(data, dict) or data.keys() != types.keys():
            return None
        if any(type(data[k]) is not t for k, t in types.items()):
            return None
        return cls(**data)

    def names_daemon(self, uid: int | None) -> bool:
        """Whether the receipt's pid is a running `netscand serve`: the process that started
        when the receipt says, run by `uid` when given. Root passes the daemon user's uid, so
        a receipt the daemon's user wrote can't make it signal a process that user could not."""
        if start_time(self.pid) != self.started:
            return False
        try:
            argv = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return False
        netscand = any(a == b"netscand" or a.endswith(b"/netscand") for a in argv)
        if not (netscand and b"serve" in argv):
            return False
        real = next((line.split()[1] for line in status.splitlines() if line.startswith("Uid:")), None)
        return uid is None or real == str(uid)


def start_time(pid: int) -> int | None:
    """When a process started (clock ticks since boot), or None when there is no such process."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat_line.rsplit(")", 1)[1].split()[19])  # field 22; the name before ")" may hold spaces
