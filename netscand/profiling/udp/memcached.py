"""memcached over UDP: "version\r\n" behind the 8-byte frame header (request id, sequence number,
datagram count, reserved; memcached's protocol.txt, "UDP protocol"), answered the same way."""

from __future__ import annotations

import struct

from netscand.profiling.services.base import ServiceInfo
from netscand.profiling.services.probes import memcached as tcp_memcached

name = "memcached"
ports = frozenset({11211})
any_source_port = False

_FRAME = struct.Struct("!HHHH")


def requests(ip: str, ident: int) -> tuple[bytes, ...]:
    return (_FRAME.pack(ident, 0, 1, 0) + b"version\r\n",)


def parse(data: bytes, ident: int) -> ServiceInfo | None:
    if len(data) < _FRAME.size or _FRAME.unpack_from(data)[0] != ident:
        return None
    return tcp_memcached.parse(data[_FRAME.size :])
