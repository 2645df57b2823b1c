"""AF_PACKET sockets: one to send frames, one per worker to receive replies behind a BPF filter.

Every worker's receive socket on an interface joins one PACKET_FANOUT group, so the kernel
spreads replies over the workers; any worker can record any reply because the probe states live
in shared memory.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_FANOUT = 18
PACKET_IGNORE_OUTGOING = 23
PACKET_FANOUT_HASH = 0
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SNAPLEN = 256  # enough for Ethernet + IP + TCP with options, or ICMP quoting IP + TCP
RCVBUF = 32 << 20


def _assemble(program: list[tuple]) -> bytes:
    """Assemble (label?, code, jt, jf, k) rows where jt/jf may name labels, into sock_filter[]."""
    labels = {row[0]: i for i, row in enumerate(program) if row[0]}
    out = []
    for i, (_, code, jt, jf, k) in enumerate(program):
        jt = labels[jt] - i - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - i - 1 if isinstance(jf, str) else jf
        out.append(struct.pack("HBBI", code, jt, jf, k))
    return b"".join(out)


def reply_filter(port_lo: int, port_hi: int) -> bytes:
    """Accept ARP replies, ICMP, and unfragmented TCP with ACK or RST to our source-port range."""
    ld_h, ld_b, ldx_msh, ld_hx, ld_bx = 0x28, 0x30, 0xB1, 0x48, 0x50
    jeq, jge, jgt, jset, ret = 0x15, 0x35, 0x25, 0x45, 0x06
    return _assemble([
        ("", ld_h, 0, 0, 12),
        ("", jeq, 0, "ip", 0x0806),
        ("", ld_h, 0, 0, 20),
        ("", jeq, "accept", "reject", 2),
        ("ip", jeq, 0, "reject", 0x0800),
        ("", ld_h, 0, 0, 20),
        ("", jset, "reject", 0, 0x1FFF),
        ("", ld_b, 0, 0, 23),
        ("", jeq, "accept", 0, 1),
        ("", jeq, 0, "reject", 6),
        ("", ldx_msh, 0, 0, 14),
        ("", ld_hx, 0, 0, 14 + 2),
        ("", jge, 0, "reject", port_lo),
        ("", jgt, "reject", 0, port_hi),
        ("", ld_bx, 0, 0, 14 + 13),
        ("", jset, "accept", "reject", 0x14),  # ACK or RST: never our own SYN seen on lo
        ("accept", ret, 0, 0, SNAPLEN),
        ("reject", ret, 0, 0, 0),
    ])


def _attach(sock: socket.socket, program: bytes) -> None:
    import ctypes

    buf = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def open_rx(ifindex: int, fanout_group: int, port_lo: int, port_hi: int) -> socket.socket:
    # Created with protocol 0 so nothing is queued before the filter is attached.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        _attach(sock, reply_filter(port_lo, port_hi))
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((socket.if_indextoname(ifindex), ETH_P_ALL))
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.setsockopt(SOL_PACKET, PACKET_FANOUT, fanout_group | (PACKET_FANOUT_HASH << 16))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def open_tx(ifindex: int, loopback: bool) -> Callable[[bytearray], object]:
    """A function that sends one Ethernet frame built by a probe."""
    if loopback:
        # Frames injected on lo skip the output route, and the input route then drops 127/8
        # as martian; the IP layer keeps the route, as nmap does for localhost.
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        return lambda frame: raw.sendto(memoryview(frame)[14:], (socket.inet_ntoa(frame[30:34]), 0))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.bind((socket.if_indextoname(ifindex), 0))
    return sock.send
