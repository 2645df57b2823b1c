"""One UDP exchange with ip:port, shared by the name queries (names/) and UDP service detection
(udp/): the requests sent 1 + `retries` times, `timeout` apart, from a socket of the exchange's
own, connected to the port (so only that port can answer, and ICMP port unreachable ends it at
once), or, for a service answering from another port (TFTP), unconnected and filtered by address.

It ends at the first answer `final` accepts, or once every request is answered, with the first
answer heard; else at the end of its waits, with whatever answered (None: nothing did). Nothing
here blocks the event loop or raises for what the network does.

`knock` is the one-datagram form that keeps the ICMP answer: what a port says to one datagram.
"""

from __future__ import annotations

import asyncio
import errno
import secrets
import socket
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
# ICMP errors other than port unreachable that the kernel reports on a connected UDP socket:
# network, host and protocol unreachable, and administratively prohibited (EHOSTUNREACH).
FILTER_ERRNOS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENOPROTOOPT})


def new_ident() -> int:
    """An exchange's random id: 1..0xFFFF fits every protocol's id field (DNS, NetBIOS, SNMP...)."""
    return 1 + secrets.randbelow(0xFFFF)


async def exchange(ip: str, port: int, requests: Sequence[bytes], read: Callable[[bytes], T | None], *,
                   timeout: float, retries: int, final: Callable[[T], bool] = lambda _: True,
                   any_source_port: bool = False) -> T | None:
    """The exchange's answer: `read` turns a datagram into an answer or None (not ours); it is
    called on strangers' bytes and must never raise."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T | None] = loop.create_future()
    listener = _Listener(ip, read, final, len(requests), done)
    local, remote = (("0.0.0.0", 0), None) if any_source_port else (None, (ip, port))
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: listener, local_addr=local, remote_addr=remote)
    except OSError:  # no route, no usable source address: no answer either
        return None
    try:
        for _ in range(retries + 1):
            for datagram in requests:
                transport.sendto(datagram, (ip, port) if any_source_port else None)
            try:
                # shield: a timeout must not cancel the future, which stays for the next send
                return await asyncio.wait_for(asyncio.shield(done), timeout)
            except TimeoutError:
                if listener.fallback is not None:
                    return listener.fallback  # it answered, just not finally
        return None
    finally:
        transport.close()


class _Listener(asyncio.DatagramProtocol, Generic[T]):
    """Resolves `done` with the first answer `final` accepts, or with the first answer once
    `expected` answers came (None: the port is closed); until then an answer `final` does not
    accept waits in `fallback`."""

    def __init__(self, ip: str, read: Callable[[bytes], T | None], final: Callable[[T], bool], expected: int,
                 done: asyncio.Future[T | None]) -> None:
        self._ip, self._read, self._final, self._done = ip, read, final, done
        self._expected = expected
        self._heard = 0
        self.fallback: T | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr[0] != self._ip or self._done.done():
            return
        answer = self._read(data)
        if answer is None:
            return
        self._heard += 1
        if self._final(answer):
            self._done.set_result(answer)
            return
        if self.fallback is None:
            self.fallback = answer
        if self._heard >= self._expected:  # every request answered: nothing better is coming
            self._done.set_result(self.fallback)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable (ECONNREFUSED) on a connected socket: closed, on every retry too.
        # Other errors (host unreachable after ARP failed, ...) are left to the timeout and retries.
        if isinstance(exc, ConnectionRefusedError) and not self._done.done():
            self._done.set_result(self.fallback)


async def knock(ip: str, port: int, datagram: bytes, *, timeout: float) -> str | None:
    """What ip:port says to one datagram within `timeout`, from a connected socket of its own:
    "open" (a datagram from it), "closed" (ICMP port unreachable: ECONNREFUSED), "filtered"
    (another ICMP unreachable the kernel reports), None (silence). Sent once: a retry could only
    spend another of the host's ICMP tokens; the caller paces by them."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect((ip, port))
        # Sent here, not by the transport: asyncio's sendto drops an empty datagram, the probe
        # of every port without a payload.
        sock.send(datagram)
        transport, _ = await loop.create_datagram_endpoint(lambda: _Knock(done), sock=sock)
    except OSError:  # no route, no usable source address, a full buffer: no answer either
        sock.close()
        return None
    try:
        return await asyncio.wait_for(done, timeout)
    except TimeoutError:
        return None
    finally:
        transport.close()


class _Knock(asyncio.DatagramProtocol):
    """Resolves `done` with the first thing the connected port says."""

    def __init__(self, done: asyncio.Future[str]) -> None:
        self._done = done

    def _say(self, state: str) -> None:
        if not self._done.done():
            self._done.set_result(state)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._say("open")  # connected: only the port itself can send to this socket

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            self._say("closed")
        elif isinstance(exc, OSError) and exc.errno in FILTER_ERRNOS:
            self._say("filtered")
