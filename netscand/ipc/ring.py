"""Single-producer/single-consumer ring of fixed-size records in shared memory.

The producer owns `tail`, the consumer owns `head`; each only ever writes its own counter, so no
lock is needed. Counters grow forever (u64) and are reduced modulo the capacity on access. The
record is written before `tail` is advanced, and x86-64 keeps stores in program order, so a
consumer that sees the new tail also sees the record. Wake-ups go through an eventfd made before
fork, so the consumer can sleep in select() or an event loop's add_reader().
"""

from __future__ import annotations

import os
import struct

# Native format on purpose: CPython packs and unpacks native "Q" with one 8-byte memcpy, a single
# aligned load or store, while standard-size formats ("<Q") copy byte by byte, so the other
# process could read a counter half written.
_COUNTER = struct.Struct("Q")
_HEAD_AT = 0
_TAIL_AT = 64  # a cache line apart, so producer and consumer don't share one
_DATA_AT = 128


class Ring:
    def __init__(self, buf: memoryview, record_size: int, capacity: int, wake_fd: int) -> None:
        if capacity & (capacity - 1):
            raise ValueError("ring capacity must be a power of two")
        if len(buf) < self.size_for(record_size, capacity):
            raise ValueError("ring buffer too small")
        self._buf = buf
        self._record = record_size
        self._mask = capacity - 1
        self.capacity = capacity
        self.wake_fd = wake_fd

    @staticmethod
    def size_for(record_size: int, capacity: int) -> int:
        return _DATA_AT + record_size * capacity

    def _head(self) -> int:
        return _COUNTER.unpack_from(self._buf, _HEAD_AT)[0]

    def _tail(self) -> int:
        return _COUNTER.unpack_from(self._buf, _TAIL_AT)[0]

    def __len__(self) -> int:
        return self._tail() - self._head()

    def push(self, record: bytes, wake: bool = True) -> bool:
        """Append one record; False when the ring is full (the caller decides to wait or drop)."""
        tail = self._tail()
        if tail - self._head() > self._mask:
            return False
        at = _DATA_AT + (tail & self._mask) * self._record
        self._buf[at : at + self._record] = record
        _COUNTER.pack_into(self._buf, _TAIL_AT, tail + 1)
        if wake:
            self.wake()
        return True

    def wake(self) -> None:
        os.eventfd_write(self.wake_fd, 1)

    def pop_many(self, limit: int = 1024) -> list[bytes]:
        head, tail = self._head(), self._tail()
        n = max(0, min(tail - head, limit))
        out = []
        for i in range(head, head + n):
            at = _DATA_AT + (i & self._mask) * self._record
            out.append(bytes(self._buf[at : at + self._record]))
        if n:
            _COUNTER.pack_into(self._buf, _HEAD_AT, head + n)
        return out

    def clear_wake(self) -> None:
        """Reset the eventfd after a wake-up; records are then read with pop_many()."""
        try:
            os.eventfd_read(self.wake_fd)
        except BlockingIOError:
            pass
