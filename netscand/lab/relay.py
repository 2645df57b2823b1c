"""The delay relay: the kernel has no netem, so one-way latency is added in user space.

It sits in the relay namespace between `r0` (the scanner's side) and `r1` (the bridge's side),
reads every frame arriving on either with AF_PACKET and sends it out the other side DELAY_MS
later. The delay is the same for every frame, so one FIFO keeps both directions in order.
Usage: python -m netscand.lab.relay STATEFILE NETNS DELAY_MS IF_A IF_B
"""

from __future__ import annotations

import collections
import selectors
import socket
import struct
import sys
import time

from pyroute2 import netns

from netscand.lab import procs

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_IGNORE_OUTGOING = 23  # without it each socket would read back what it sent: a loop


def open_port(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    # Frames for the scanner's MAC are "other host" at r1; promiscuous mode makes sure they come up.
    mreq = struct.pack("iHH8s", socket.if_nametoindex(ifname), PACKET_MR_PROMISC, 0, b"")
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    sock.setblocking(False)
    return sock


def relay(a: socket.socket, b: socket.socket, delay: float) -> None:
    other = {a: b, b: a}
    queue: collections.deque[tuple[float, socket.socket, bytes]] = collections.deque()
    selector = selectors.DefaultSelector()
    for sock in (a, b):
        selector.register(sock, selectors.EVENT_READ, sock)
    while True:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else None
        for key, _ in selector.select(timeout):
            sock = key.data
            while True:
                try:
                    frame = sock.recv(65535)
                except BlockingIOError:
                    break
                queue.append((time.monotonic() + delay, other[sock], frame))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, out, frame = queue.popleft()
            try:
                out.send(frame)
            except OSError:
                pass  # a full queue on the far side is loss, as on a real link


def main(argv: list[str]) -> int:
    _, ns_name, delay_ms, if_a, if_b = argv
    netns.setns(ns_name, flags=0)
    a, b = open_port(if_a), open_port(if_b)
    procs.signal_ready()
    relay(a, b, int(delay_ms) / 1000)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
