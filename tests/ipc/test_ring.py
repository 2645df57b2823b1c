import mmap
import os
import select
import signal
import time

from netscand.ipc.ring import Ring


def make(capacity=8, record=16):
    buf = mmap.mmap(-1, Ring.size_for(record, capacity))
    return Ring(memoryview(buf), record, capacity, os.eventfd(0, os.EFD_NONBLOCK))


def test_fifo_full_and_wrap():
    ring = make()
    for round_ in range(3):  # past the end of the buffer several times
        for i in range(8):
            assert ring.push(bytes([round_, i]) + bytes(14))
        assert not ring.push(bytes(16))
        got = ring.pop_many()
        assert [r[:2] for r in got] == [bytes([round_, i]) for i in range(8)]
        assert ring.pop_many() == []


def test_across_fork_with_wakeup():
    # Enough records for the producer's counter stores to race the consumer's loads many times:
    # a counter read half written once moved the consumer's head backwards.
    n = 100_000
    ring = make(capacity=64)
    pid = os.fork()
    if pid == 0:
        deadline = time.monotonic() + 30
        for i in range(n):
            while not ring.push(i.to_bytes(16, "big"), wake=i % 32 == 0) and time.monotonic() < deadline:
                pass
        ring.wake()
        os._exit(0)
    got: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            select.select([ring.wake_fd], [], [], 0.01)
            ring.clear_wake()
            got += [int.from_bytes(r, "big") for r in ring.pop_many()]
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert got == list(range(n))
