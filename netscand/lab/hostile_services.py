"""The hostile hosts' servers: the tarpit's one listener (x1) and the misbehaving services (x2).

Like services.py it creates each socket in its host's namespace, then serves them all from one
asyncio loop in the namespace it started in. What each port does is in hostile.SERVICES.
Usage: python -m netscand.lab.hostile_services STATEFILE
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

from netscand.lab import answers, certs, hostile, namespaces, procs

HOLD_MAX = 1024  # connections the tarpit holds at once; beyond that it drops new ones at once
READ_WAIT_S = 10.0  # how long a service waits for the request it answers
REQUEST_MAX = 8192
BACKLOG = 4096

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Sockets:
    tarpit: list[socket.socket] = field(default_factory=list)
    tcp: dict[int, socket.socket] = field(default_factory=dict)
    udp: dict[int, socket.socket] = field(default_factory=dict)
    tls: dict[int, ssl.SSLContext] = field(default_factory=dict)


def _listener(ip: str, port: int, backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((ip, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def _datagram(ip: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, port))
    sock.setblocking(False)
    return sock


def open_all(state: dict[str, Any]) -> Sockets:
    found = Sockets()
    for host in filter(hostile.is_hostile, state["hosts"]):
        with namespaces.inside(host["netns"]):
            if host["role"] == "tarpit":
                found.tarpit.append(_listener(host["ip"], host["listener"], hostile.TARPIT_BACKLOG))
                continue
            for port in host["open"]:
                found.tcp[port] = _listener(host["ip"], port, BACKLOG)
            for port in host["udp_ports"]:
                found.udp[port] = _datagram(host["ip"], port)
    # Made before the helper says it is ready, so a test never meets a port without its chain.
    found.tls = {hostile.TLS_PORT: certs.server_context(certs.BIG),
                 hostile.HUGE_TLS_PORT: certs.server_context(certs.HUGE)}
    return found


def _guarded(handler: Handler) -> Handler:
    """A client that leaves, resets or stalls ends its own connection, nothing else; an answer
    that is complete is flushed before the close (for a client that reads it, within READ_WAIT_S)."""
    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
            writer.close()
            async with asyncio.timeout(READ_WAIT_S):
                await writer.wait_closed()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            pass
        finally:
            writer.transport.abort()
    return run


class Tarpit:
    """Accepts every connection and holds it in silence, reading and dropping what comes."""

    def __init__(self) -> None:
        self.held = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.held >= HOLD_MAX:
            return
        self.held += 1
        try:
            while await reader.read(4096):
                pass
        finally:
            self.held -= 1


async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    for i in itertools.count():
        at = i % len(answers.DRIP_TEXT)
        writer.write(answers.DRIP_TEXT[at : at + 1])
        await writer.drain()
        await asyncio.sleep(hostile.DRIP_INTERVAL_S)


async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        writer.write(answers.ENDLESS_CHUNK)
        await writer.drain()


async def tcp_dns(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    async with asyncio.timeout(READ_WAIT_S):
        length = int.from_bytes(await reader.readexactly(2), "big")
        query = await reader.readexactly(length)
    writer.write(answers.tcp_dns_answers(query))
    await writer.drain()


async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        async with asyncio.timeout(READ_WAIT_S):
            await reader.readuntil(b"\r\n\r\n")  # the request, whatever it is
    writer.write(answers.http_page())
    await writer.drain()


HANDLERS: dict[int, Handler] = {hostile.DRIP_PORT: drip, hostile.ENDLESS_PORT: endless, hostile.DNS_PORT: tcp_dns,
                                hostile.HTTP_PORT: http, hostile.TLS_PORT: http, hostile.HUGE_TLS_PORT: http}
ANSWERS: dict[int, Callable[[bytes], list[bytes]]] = {hostile.MDNS_PORT: answers.mdns_answers,
                                                      hostile.NETBIOS_PORT: answers.netbios_answers,
                                                      hostile.SNMP_PORT: answers.snmp_answers}


class Answerer(asyncio.DatagramProtocol):
    """Answers each query on its port with every hostile answer that port has."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector transport does not subclass DatagramTransport, though it is one.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.port == hostile.MDNS_PORT == addr[1]:
            return  # a full mDNS querier expects multicast answers, which the lab has not
        assert self.transport is not None
        for reply in ANSWERS[self.port](data):
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error for an earlier answer: the asker left


async def _serve(sockets: Sockets) -> None:
    loop = asyncio.get_running_loop()
    tarpit = Tarpit()
    servers = [await asyncio.start_server(_guarded(tarpit), sock=sock) for sock in sockets.tarpit]
    for port, sock in sockets.tcp.items():
        context = sockets.tls.get(port)
        servers.append(await asyncio.start_server(_guarded(HANDLERS[port]), sock=sock, ssl=context,
                                                  ssl_handshake_timeout=READ_WAIT_S if context else None))
    for port, sock in sockets.udp.items():
        await loop.create_datagram_endpoint(partial(Answerer, port), sock=sock)
    await asyncio.Event().wait()  # until SIGTERM


def serve(sockets: Sockets) -> None:
    asyncio.run(_serve(sockets))


if __name__ == "__main__":
    raise SystemExit(procs.serve_lab(sys.argv[1:], open_all, serve))
