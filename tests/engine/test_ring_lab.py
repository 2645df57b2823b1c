"""A real receive ring (engine/ring.py) on the lab's scanner interface: what passes the filter
arrives, in order, and nothing else."""

from __future__ import annotations

import select
import socket
import time

import pytest

from netscand.engine import bpf, sockets
from netscand.engine.probes import reply_clauses
from netscand.lab import Lab, namespaces

pytestmark = pytest.mark.lab


def test_a_ring_receives_through_the_filter_in_a_lab(lab: Lab) -> None:
    """UDP datagrams to the replies' source ports from a lab host reach the ring, and nothing
    the filter refuses does (datagrams to another port)."""
    host = lab.truth["hosts"][0]
    lo, hi = 61440, 61440 + 4095
    with namespaces.inside(lab.scanner_ns):
        ifindex = socket.if_nametoindex(lab.truth["scanner"]["ifname"])
        program = bpf.reply_filter(reply_clauses(lo, hi), sockets.SNAPLEN)
        rx = sockets.open_rx(ifindex, 0x4E52, program)
    try:
        assert rx.batches(64) == []
        with namespaces.inside(host["netns"]), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(300):
                s.sendto(i.to_bytes(2, "big"), (lab.truth["scanner"]["ip"], lo + (i % 7)))
                s.sendto(b"no", (lab.truth["scanner"]["ip"], 9))
        got: list[bytes] = []
        deadline = time.monotonic() + 5
        while len(got) < 300 and time.monotonic() < deadline:
            select.select([rx], [], [], 0.1)
            got += [f for batch in rx.batches(64) for f in batch.all()]
        payloads = [f[42:44] for f in got if f[23] == 17]
        assert payloads == [i.to_bytes(2, "big") for i in range(300)]
        assert not [f for f in got if f[23] == 17 and f[36:38] == b"\0\x09"]
    finally:
        rx.close()
