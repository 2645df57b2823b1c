"""A paced plan of kernel-shaped SYNs run by a real worker and dispatcher in the lab (solo.py):
every open port of the truth found, and from a capture on the scanner's interface: no two SYNs
to one host closer than the gap, source ports even and in the plan's range, each SYN's fields
those of the kernel's own SYN (synshape), and no handshake completed by the scanner."""

from __future__ import annotations

import socket
import struct
from collections import defaultdict
from ipaddress import IPv4Address

import dpkt
import pytest

from netscand.engine import plan as plans
from netscand.engine import synshape
from netscand.engine.probes import tcp_syn_kernel
from netscand.engine.shm import R_DONE, R_PORT, S_OPEN
from netscand.lab import Lab
from netscand.lab.namespaces import inside
from tests.engine.solo import run_alone
from tests.engine.test_synshape_netns import fields

pytestmark = pytest.mark.lab

GAP_MS, JITTER_MS = 100, 50
SPORTS = (40000, 40999)
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35  # Linux (asm-generic); Python does not name it


def ip(text: str) -> int:
    return int(IPv4Address(text))


def capture_socket() -> socket.socket:
    """Every frame scan0 sends, kernel-timestamped (made inside the scanner's namespace)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("scan0", ETH_P_ALL))
    sock.setblocking(False)
    return sock


def sent_tcp(sock: socket.socket) -> list[tuple[float, bytes]]:
    """(kernel time, frame) of each TCP frame scan0 sent since the socket opened."""
    out = []
    while True:
        try:
            frame, anc, _, addr = sock.recvmsg(2048, socket.CMSG_SPACE(16))
        except BlockingIOError:
            return out
        if addr[2] != PACKET_OUTGOING or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            continue
        sec, nsec = struct.unpack("qq", anc[0][2][:16])
        out.append((sec + nsec / 1e9, frame))


def test_a_paced_plan_finds_every_open_port_at_its_hosts_pace_with_the_kernels_syn(lab: Lab) -> None:
    truth = lab.truth
    hosts = [h for h in truth["hosts"] if h["kind"] == "imitation" and not h["routed"]][:4]
    ports = tuple(sorted({p for h in hosts for p in h["open"] + h["filtered"]} | {1, 7}))
    with inside(lab.scanner_ns):
        ifindex = socket.if_nametoindex("scan0")
        shape = synshape.capture(synshape.mtu(ifindex) - synshape.HEADERS)
        cap = capture_socket()

        def make(slot: int, gen: int) -> plans.Plan:
            return plans.Plan(gen=gen, kind=tcp_syn_kernel.PROBE.kind, slot=slot, share=1, retries=1,
                              key=b"p" * 16, ifindex=ifindex, src_ip=ip(truth["scanner"]["ip"]),
                              src_mac=bytes.fromhex(truth["scanner"]["mac"].replace(":", "")),
                              sport_base=61440 + (slot << 10), rate=100.0, timeout_init_ms=300,
                              timeout_min_ms=300, timeout_max_ms=300, shard_size=2 * len(ports),
                              hosts=tuple(ip(h["ip"]) for h in hosts),
                              macs=tuple(bytes.fromhex(h["mac"].replace(":", "")) for h in hosts), ports=ports,
                              gap_ms=GAP_MS, jitter_ms=JITTER_MS, silent_probes=len(ports),
                              sport_lo=SPORTS[0], sport_hi=SPORTS[1])

        finished, results, matched = run_alone(make, 50)
        frames = sent_tcp(cap)
        cap.close()
    assert finished
    assert sorted(r.shard for r in results if r.kind == R_DONE) == [0, 1]
    found = {(r.ip, r.port) for r in results if r.kind == R_PORT and r.state == S_OPEN}
    assert found == {(ip(h["ip"]), p) for h in hosts for p in h["open"]}

    targets = {ip(h["ip"]) for h in hosts}
    syns: dict[int, list[float]] = defaultdict(list)
    for at, frame in frames:
        pkt = dpkt.ethernet.Ethernet(frame).data
        dst, tcp = int.from_bytes(pkt.dst, "big"), pkt.data
        assert dst in targets  # nothing else was sent to
        if tcp.flags & dpkt.tcp.TH_RST:
            continue  # the scanner's kernel refusing a SYN-ACK: no handshake completed
        assert tcp.flags == dpkt.tcp.TH_SYN, f"a TCP frame other than SYN or RST: flags {tcp.flags:#x}"
        assert SPORTS[0] <= tcp.sport <= SPORTS[1] and tcp.sport % 2 == 0
        got = fields(frame)
        assert (got["ttl"], got["tos"], got["df"], got["window"], got["flags"]) == \
            (shape.ttl, shape.tos, int(shape.df), shape.window, shape.flags)
        ts = shape.ts_at
        assert got["options but TSval"] == shape.options[: ts] + shape.options[ts + 4 :]
        syns[dst].append(at)
    assert set(syns) == targets
    for times in syns.values():
        times.sort()
        assert min(b - a for a, b in zip(times, times[1:])) >= GAP_MS / 1000
    assert sum(len(t) for t in syns.values()) >= len(hosts) * len(ports)  # every (host, port), and retries
