"""AF_PACKET sockets: one to send frames, one per worker to receive replies behind a BPF filter
(bpf.py builds it from the probe types), read through a ring (ring.py).

Every worker's receive socket on an interface joins one PACKET_FANOUT group, so the kernel
spreads replies over the workers; any worker can record any reply because the probe states live
in shared memory.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import time
from typing import Protocol

import numpy as np
import numpy.typing as npt

from netscand.engine.ring import SOL_PACKET, Frames, Ring

ETH_P_ALL = 0x0003
PACKET_FANOUT = 18
PACKET_IGNORE_OUTGOING = 23
PACKET_FANOUT_HASH = 0
SO_ATTACH_FILTER = 26
SNAPLEN = 256  # enough for Ethernet + IP + TCP with options, or ICMP quoting IP + TCP


def attach(sock: socket.socket, program: bytes) -> None:
    """Set (or replace: the kernel swaps it at once, the queue kept) a socket's receive filter."""
    buf = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def open_rx(ifindex: int, fanout_group: int, program: bytes) -> Ring:
    """A receive socket behind `program` (bpf.reply_filter), in the interface's fanout group,
    read through its ring (ring.py)."""
    # Created with protocol 0 so nothing is queued before the filter is attached.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        attach(sock, program)
        rx = Ring(sock)  # before bind: a socket's ring is set up before it receives
    except BaseException:
        sock.close()
        raise
    try:
        sock.bind((socket.if_indextoname(ifindex), ETH_P_ALL))
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.setsockopt(SOL_PACKET, PACKET_FANOUT, fanout_group | (PACKET_FANOUT_HASH << 16))
        sock.setblocking(False)
    except BaseException:
        rx.close()
        raise
    return rx


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(_IoVec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_libc = ctypes.CDLL(None, use_errno=True)
_RETRYABLE = (errno.ENOBUFS, errno.EAGAIN, errno.EINTR)


class Sender:
    """Frames are copied into one buffer and leave in one sendmmsg() call per batch: the
    syscall, not the copy, is what a frame costs Python (docs/architecture.md's measurements).
    A probe that builds a batch over arrays writes its frames into the buffer's rows in place
    (rows(), add_rows()) instead of one copy each."""

    # An Ethernet frame without its FCS: a UDP probe carries its protocol's request (an IKE
    # SA_INIT, a WS-Discovery SOAP envelope), not just headers.
    FRAME_MAX = 1514
    # The most rows one rows() call hands out, and so the most the buffer grows to (387 KB): a
    # worker's turn at 50,000/s sends BURST_S x rate = 200 probes (pacing.py); a bigger batch
    # is written in parts.
    ROWS_MAX = 256

    def __init__(self, sock: socket.socket, capacity: int = 64) -> None:
        self._sock = sock  # kept open as long as the sender lives
        self._fd = sock.fileno()
        self._n = 0
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        """Buffers for `capacity` frames (none queued: the old ones are dropped)."""
        self._capacity = capacity
        self._buf = ctypes.create_string_buffer(capacity * self.FRAME_MAX)
        self._view = memoryview(self._buf).cast("B")
        # The ctypes arrays must outlive every call: the kernel reads them through pointers.
        self._iov = (_IoVec * capacity)()
        self._msgs = (_MMsgHdr * capacity)()
        base = ctypes.addressof(self._buf)
        for i in range(capacity):
            self._iov[i].iov_base = base + i * self.FRAME_MAX
            self._msgs[i].msg_hdr.msg_iov = ctypes.pointer(self._iov[i])
            self._msgs[i].msg_hdr.msg_iovlen = 1
        self._rows = np.frombuffer(self._view, np.uint8).reshape(capacity, self.FRAME_MAX)
        # Each _IoVec is two size_t: base, then length.
        self._lengths = np.frombuffer(memoryview(self._iov).cast("B"), np.uintp).reshape(capacity, 2)[:, 1]

    def __call__(self, frame: bytearray) -> None:
        at = self._n * self.FRAME_MAX
        self._view[at : at + len(frame)] = frame
        self._iov[self._n].iov_len = len(frame)
        self._n += 1
        if self._n == self._capacity:
            self.flush()

    def rows(self, n: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uintp]]:
        """The next n frames' rows (n, FRAME_MAX) and lengths, to write in place and queue with
        add_rows(n). What is queued is sent first if they would not fit after it; the buffer
        grows (doubling, up to ROWS_MAX) if it holds fewer than n rows."""
        if not 0 < n <= self.ROWS_MAX:
            raise ValueError(f"rows() hands out 1 to {self.ROWS_MAX} rows, not {n}")
        if self._n + n > self._capacity:
            self.flush()
            if n > self._capacity:
                self._allocate(min(self.ROWS_MAX, max(n, 2 * self._capacity)))
        return self._rows[self._n : self._n + n], self._lengths[self._n : self._n + n]

    def add_rows(self, n: int) -> None:
        """Queue the n rows rows(n) handed out, written: flush() sends them with the rest."""
        self._n += n
        if self._n == self._capacity:
            self.flush()

    def flush(self) -> None:
        """Send what is queued; a full interface queue is waited out, never dropped."""
        done = 0
        while done < self._n:
            sent = _libc.sendmmsg(self._fd, ctypes.byref(self._msgs, done * ctypes.sizeof(_MMsgHdr)),
                                  self._n - done, 0)
            if sent < 0:
                err = ctypes.get_errno()
                if err not in _RETRYABLE:
                    raise OSError(err, os.strerror(err))
                time.sleep(0.0005)
                continue
            done += sent
        self._n = 0

    def close(self) -> None:
        self._sock.close()


class RawIp:
    """Loopback: frames injected on lo skip the output route and the input route then drops
    127/8 as martian; the IP layer keeps the route, as nmap does for localhost."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)

    def __call__(self, frame: bytearray) -> None:
        self._sock.sendto(memoryview(frame)[14:], (socket.inet_ntoa(frame[30:34]), 0))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._sock.close()


def open_tx(ifindex: int, loopback: bool) -> Sender | RawIp:
    """A callable that queues one Ethernet frame built by a probe, and flush() to send them."""
    if loopback:
        return RawIp()
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.bind((socket.if_indextoname(ifindex), 0))
    return Sender(sock)


class Tx(Protocol):
    """Where a worker's frames go: queue one, flush the queue."""

    def __call__(self, frame: bytearray) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class Rx(Protocol):
    """Where a worker's replies come from: a ring (ring.py), or a test's socket (Datagrams)."""

    def fileno(self) -> int: ...

    def batches(self, limit: int) -> list[Frames]:
        """What has arrived: `limit` frames or more when that many wait (a ring reads whole
        blocks, so up to a block's frames past it), in order; none waiting: []."""

    def close(self) -> None: ...


class Datagrams:
    """A socket read one recv() a frame: a test's socket pair standing in for a ring."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock  # non-blocking

    def fileno(self) -> int:
        return self.sock.fileno()

    def batches(self, limit: int) -> list[Frames]:
        out: list[bytes] = []
        for _ in range(limit):
            try:
                out.append(self.sock.recv(SNAPLEN))
            except OSError:  # nothing waiting (EAGAIN), or the socket went away
                break
        return [Frames.of(out)] if out else []

    def close(self) -> None:
        self.sock.close()


class Link(Protocol):
    """How a worker opens its sockets on an interface: raw ones (RAW_LINK), or a test's."""

    def transmitter(self, ifindex: int, loopback: bool) -> Tx: ...

    def receiver(self, ifindex: int, fanout_group: int, program: bytes) -> Rx: ...

    def refilter(self, rx: Rx, program: bytes) -> None:
        """Replace the filter of a receiver this link opened."""


class RawLink:
    def transmitter(self, ifindex: int, loopback: bool) -> Tx:
        return open_tx(ifindex, loopback)

    def receiver(self, ifindex: int, fanout_group: int, program: bytes) -> Rx:
        return open_rx(ifindex, fanout_group, program)

    def refilter(self, rx: Rx, program: bytes) -> None:
        assert isinstance(rx, Ring)  # open_rx's
        attach(rx.sock, program)


RAW_LINK = RawLink()
