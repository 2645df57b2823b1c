"""The shape of this host's own connect() SYN, taken from a real one, for probes that must look
like it (probes/tcp_syn_kernel.py): signature rules test a SYN's TTL, TOS, DF, window, flags
and option kinds, order and values, and a SYN that carries the kernel's own matches none of the
rules that single out scanners.

The capture sends nothing off the host: a nonblocking connect() to a closed port of 127.0.0.1,
its SYN read by a raw socket as loopback delivers it (the kernel answers it with a RST). The
MSS, and the window the kernel derives from it, are the scan interface's: TCP_MAXSEG clamps the
SYN's MSS to what that interface's MTU gives. It can only lower lo's own MSS, and Linux refuses
one above 32767 (MAX_TCP_WINDOW) with EINVAL: an MSS at or above lo's is left to the kernel
(lo's is the right one to scan 127.0.0.1 with, lo's MTU being 65536 by default), one between
32767 and lo's gets 32767, the nearest the kernel takes. A worker captures once per MSS (shape()).
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import struct
import time
from typing import NamedTuple

SIOCGIFMTU = 0x8921
HEADERS = 40  # IPv4 and TCP without options: an interface's MTU less these is its MSS
MSS_MIN, MSS_MAX = 88, 0xFFFF - HEADERS  # what a SYN can ask for (an IP packet is at most 65535)
MAXSEG_MAX = 32767  # the largest TCP_MAXSEG Linux accepts (module docstring)
CAPTURE_S = 1.0  # a SYN on loopback is delivered at once: this is only for a namespace gone wrong
TS_KIND = 8


class SynShape(NamedTuple):
    """The header fields of a kernel SYN a rule can test; addresses, ports, sequence, IP ID and
    the timestamp value differ per connection and are the probe's to fill."""

    ttl: int
    tos: int
    df: bool
    window: int
    flags: int  # of TCP: SYN, with ECE and CWR where the kernel asks for ECN
    options: bytes  # as sent, the timestamp value included (the probe overwrites it)

    @property
    def ts_at(self) -> int:
        """Where the timestamp value is in `options`, or -1 when the kernel sends none."""
        for at, kind, length in option_spans(self.options):
            if kind == TS_KIND and length == 10:
                return at + 2
        return -1


def option_spans(options: bytes) -> list[tuple[int, int, int]]:
    """(offset, kind, length) of each TCP option, up to the end option or the first that does
    not fit (total: options come from the wire as well)."""
    out, at = [], 0
    while at < len(options):
        kind = options[at]
        if kind == 0:
            break
        if kind == 1:
            out.append((at, 1, 1))
            at += 1
            continue
        if at + 1 >= len(options) or options[at + 1] < 2 or at + options[at + 1] > len(options):
            break
        out.append((at, kind, options[at + 1]))
        at += options[at + 1]
    return out


def mtu(ifindex: int) -> int:
    """The interface's MTU, in this network namespace."""
    name = socket.if_indextoname(ifindex).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ifr = fcntl.ioctl(sock, SIOCGIFMTU, struct.pack("16si12x", name, 0))
    return int(struct.unpack_from("16si", ifr)[1])


def loopback_mss() -> int:
    """The MSS the kernel gives a connection over lo, from its MTU (65536 by default)."""
    return min(mtu(socket.if_nametoindex("lo")) - HEADERS, MSS_MAX)


_CACHE: dict[tuple[int, int], SynShape] = {}


def shape(mss: int) -> SynShape:
    """The kernel's SYN with this MSS, captured on first use (OSError when it cannot be: lo
    down, no raw socket); a worker's probes of every plan share it. Kept per network namespace
    too (a worker has one; a test process visits several, whose sysctls may differ)."""
    key = (os.stat("/proc/thread-self/ns/net").st_ino, min(max(mss, MSS_MIN), MSS_MAX))
    if key not in _CACHE:
        _CACHE[key] = capture(key[1])
    return _CACHE[key]


def capture(mss: int) -> SynShape:
    """A real connect() SYN to a closed port of 127.0.0.1, read back (module docstring)."""
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP) as raw, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as conn:
        # Bound and never listening: closed, and no one else's to open while we connect to it.
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        if mss < loopback_mss():  # else lo's own (module docstring)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, min(mss, MAXSEG_MAX))
        conn.setblocking(False)
        err = conn.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):  # lo down, say: no SYN will come
            raise OSError(err, f"connect() to 127.0.0.1 for the kernel's SYN: {os.strerror(err)}")
        sport = conn.getsockname()[1]
        deadline = time.monotonic() + CAPTURE_S
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([raw], [], [], left)[0]:
                break
            found = parse_syn(raw.recv(256), sport, port)
            if found is not None:
                return found
    raise OSError(f"no SYN of our own connect() to 127.0.0.1:{port} seen in {CAPTURE_S} s")


def parse_syn(packet: bytes, sport: int, dport: int) -> SynShape | None:
    """The shape of an IPv4 packet if it is a SYN from `sport` to `dport`, else None."""
    if len(packet) < 40 or packet[0] >> 4 != 4 or packet[9] != 6:
        return None
    t = (packet[0] & 0x0F) * 4
    if t < 20 or len(packet) < t + 20:
        return None
    src, dst, _, _, off, flags, window = struct.unpack_from("!HHIIBBH", packet, t)
    end = t + (off >> 4) * 4
    if (src, dst) != (sport, dport) or flags & 0x3F != 0x02 or end < t + 20 or end > len(packet):
        return None
    df = bool(packet[6] & 0x40)
    return SynShape(packet[8], packet[1], df, window, flags, bytes(packet[t + 20 : end]))
