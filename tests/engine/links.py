"""A worker's sockets without root: Unix datagram socket pairs in place of raw sockets (the
worker's Link, engine/sockets.py). Frames the worker sends come out at `wire`; frames written
to `wire` reach the worker's receive socket, as replies off the segment would."""

from __future__ import annotations

import socket

from netscand.engine.sockets import Datagrams, Rx, Sender, Tx


class PairLink:
    def __init__(self) -> None:
        self.tx_worker, self.tx_wire = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.rx_worker, self.rx_wire = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for sock in (self.tx_wire, self.rx_worker):
            sock.setblocking(False)
        self.programs: list[bytes] = []  # the receive filters the worker asked for

    def transmitter(self, ifindex: int, loopback: bool) -> Tx:
        return Sender(self.tx_worker)  # the real batching sender, into the pair

    def receiver(self, ifindex: int, fanout_group: int, program: bytes) -> Rx:
        self.programs.append(program)
        return Datagrams(self.rx_worker)

    def refilter(self, rx: Rx, program: bytes) -> None:
        self.programs.append(program)

    def sent(self) -> list[bytes]:
        """Every frame the worker sent since the last look."""
        out = []
        while True:
            try:
                out.append(self.tx_wire.recv(2048))
            except BlockingIOError:
                return out

    def reply(self, frame: bytes) -> None:
        self.rx_wire.send(frame)

    def close(self) -> None:
        for sock in (self.tx_worker, self.tx_wire, self.rx_worker, self.rx_wire):
            sock.close()
