"""The detector lab's log collector: what a syslog daemon and the kernel log would give the
detectors on a real host, kept in files of the lab's own.

- scanlogd writes with syslog(3) to /dev/log; each host's scanlogd finds this process's socket
  there (detectors.py mounts it into the scanlogd's private mount namespace). Every datagram
  becomes one line of the scanlogd file, with the host it came from.
- psad reads the kernel's firewall log; the lab's log rules write there, and this process copies
  the lab's records (those with its log prefix), from the moment it started, to the kernel file
  as the syslog lines psad parses.

Usage: python -m netscand.lab.detector_logs STATEFILE WORKDIR
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from netscand.lab import detectors, procs
from netscand.lab.detector_parse import kernel_record, scanlogd_record

KMSG = "/dev/kmsg"
MAX_DATAGRAM = 8192  # scanlogd's lines are far shorter; a longer one is cut, never a reason to grow


@dataclass
class Sources:
    work: Path
    prefix: str
    kmsg: int
    syslog: dict[int, tuple[socket.socket, str]]  # fd -> (socket, host name)


def open_sources(state: dict[str, Any], work: Path) -> Sources:
    """One syslog socket per detector host, and /dev/kmsg positioned at its end (the lab's log
    starts now, not with whatever the kernel buffer still holds)."""
    syslog = {}
    for name in state["detectors"]["hosts"]:
        path = detectors.syslog_socket(work, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        os.chmod(path, 0o666)  # scanlogd sends as its own unprivileged user
        syslog[sock.fileno()] = (sock, name)
    kmsg = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK)
    os.lseek(kmsg, 0, os.SEEK_END)
    # There before the collector says it is ready: detectors.alerts takes a lab without them for one torn down.
    for log in (detectors.scanlogd_log(work), detectors.kernel_log(work)):
        log.touch()
    return Sources(work, state["prefix"], kmsg, syslog)


def _read_kmsg(fd: int, out: BinaryIO, boot_epoch: float, wanted: str) -> None:
    while True:
        try:
            record = os.read(fd, MAX_DATAGRAM)
        except BlockingIOError:
            return
        except BrokenPipeError:
            continue  # records were overwritten before we read them: go on with the next ones
        if not record:
            return
        line = kernel_record(record, boot_epoch, detectors.PSAD_HOSTNAME, wanted)
        if line:
            out.write(line.encode())
            out.flush()


def serve(sources: Sources) -> None:
    wanted = detectors.log_prefix(sources.prefix, "")
    boot_epoch = time.time() - time.monotonic()  # /dev/kmsg stamps are CLOCK_MONOTONIC
    selector = selectors.DefaultSelector()
    for fd in (sources.kmsg, *sources.syslog):
        selector.register(fd, selectors.EVENT_READ)
    with open(detectors.scanlogd_log(sources.work), "ab") as alerts, \
            open(detectors.kernel_log(sources.work), "ab") as kernel:
        while True:
            for key, _ in selector.select():
                if key.fd == sources.kmsg:
                    _read_kmsg(key.fd, kernel, boot_epoch, wanted)
                    continue
                sock, name = sources.syslog[key.fd]
                datagram = sock.recv(MAX_DATAGRAM).decode(errors="replace")
                alerts.write(scanlogd_record(name, time.time(), datagram).encode())
                alerts.flush()


def main(argv: list[str]) -> int:
    work = Path(argv[1])
    return procs.serve_lab(argv, lambda state: open_sources(state, work), serve)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
