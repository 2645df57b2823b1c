"""The frame attacker on the tarpit host (x1): while the scanner talks to a hostile host, a steady
stream of malformed and forged frames at it, every kind of frames.KINDS in turn at random.

It taps each hostile host's interface: any frame from the scanner's MAC (its ARP sweep, a SYN,
a connection, a name query; not the RSTs and ICMP errors its kernel answers forged frames with)
starts the attack, which goes on until the scanner has been quiet for hostile.ACTIVE_HOLD_S.
Each SYN the scanner sends the tarpit also gets a second SYN-ACK whose options lie
(frames.echo_synack), up to hostile.ECHO_RATE a second.
Usage: python -m netscand.lab.attacker STATEFILE
"""

from __future__ import annotations

import random
import select
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from netscand.engine.sockets import ETH_P_ALL, PACKET_IGNORE_OUTGOING, SOL_PACKET
from netscand.lab import frames, hostile, namespaces, procs

TICK_S = 0.02


@dataclass
class Ports:
    tx: socket.socket  # sends on the tarpit's interface
    taps: dict[socket.socket, bool]  # reads each hostile host's interface; True: the tarpit's
    target: frames.Target


def _tap() -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind(("eth0", ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)  # the taps must not read back what it sends
    sock.setblocking(False)
    return sock


def open_all(state: dict[str, Any]) -> Ports:
    hostiles = [h for h in state["hosts"] if hostile.is_hostile(h)]
    tarpit = next(h for h in hostiles if h["role"] == "tarpit")
    taps = {}
    for host in hostiles:
        with namespaces.inside(host["netns"]):
            taps[_tap()] = host is tarpit
    with namespaces.inside(tarpit["netns"]):
        tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        tx.bind(("eth0", 0))
    peers = [h["ip"] for h in state["hosts"] if not hostile.is_hostile(h)] + list(state["router"]["ips"])
    scanner = state["scanner"]
    return Ports(tx, taps, frames.Target.of(scanner["mac"], scanner["ip"], tarpit["mac"], tarpit["ip"], peers))


class Bucket:
    """Lets `rate` events a second through, in bursts of at most a tenth of a second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate, self.credit, self.at = rate, 0.0, time.monotonic()

    def take(self, now: float) -> int:
        self.credit = min(self.rate / 10, self.credit + (now - self.at) * self.rate)
        self.at = now
        whole = int(self.credit)
        self.credit -= whole
        return whole


class Attack:
    def __init__(self, ports: Ports, rng: random.Random) -> None:
        self.ports, self.rng = ports, rng
        self.kinds = list(frames.KINDS.values())
        self.frames, self.echoes = Bucket(hostile.FRAME_RATE), Bucket(hostile.ECHO_RATE)
        self.echo_credit = 0
        self.last_seen = float("-inf")
        self.sent = 0

    def _send(self, frame: bytes) -> None:
        try:
            self.ports.tx.send(frame)
            self.sent += 1
        except OSError:
            pass  # a full queue drops it, as a busy network would

    def _read(self, tap: socket.socket, is_tarpit: bool, now: float) -> None:
        target = self.ports.target
        while True:
            try:
                frame = tap.recv(2048)
            except BlockingIOError:
                return
            if frame[6:12] != target.scanner_mac or not frames.is_scanner_talking(frame):
                continue
            self.last_seen = now
            if not is_tarpit:
                continue
            if self.echo_credit <= 0:
                self.echo_credit = self.echoes.take(now)
            reply = frames.echo_synack(target, self.rng, frame) if self.echo_credit > 0 else None
            if reply is not None:
                self.echo_credit -= 1
                self._send(reply)

    def run(self) -> None:
        active, started = False, 0.0
        while True:
            ready, _, _ = select.select(list(self.ports.taps), [], [], TICK_S if active else None)
            now = time.monotonic()
            for tap in ready:
                self._read(tap, self.ports.taps[tap], now)
            if now - self.last_seen >= hostile.ACTIVE_HOLD_S:
                if active:
                    print(f"attack stops: {self.sent} frames in {now - started:.1f} s",
                          file=sys.stderr, flush=True)
                active = False
                continue
            if not active:
                print("attack starts: the scanner is talking to a hostile host", file=sys.stderr, flush=True)
                self.frames.take(now)  # no backlog from the quiet time
                active, started, self.sent = True, now, 0
            for _ in range(self.frames.take(now)):
                self._send(self.rng.choice(self.kinds)(self.ports.target, self.rng))


def serve(ports: Ports) -> None:
    Attack(ports, random.Random()).run()


if __name__ == "__main__":
    raise SystemExit(procs.serve_lab(sys.argv[1:], open_all, serve))
