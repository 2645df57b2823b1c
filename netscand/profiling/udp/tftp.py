"""TFTP: a read request for a file no server has (RFC 1350). A server answers from a port of its
own (its transfer id) with an ERROR ("File not found", "Access violation") or, should the name
exist, the first DATA block; either proves TFTP. Neither names the server, nor its version."""

from __future__ import annotations

import struct

from netscand.profiling.services.base import ServiceInfo, printable

name = "tftp"
ports = frozenset({69})
any_source_port = True

_RRQ, _DATA, _ERROR = 1, 3, 5
_OPCODE = struct.Struct("!HH")


def requests(ip: str, ident: int) -> tuple[bytes, ...]:
    return (struct.pack("!H", _RRQ) + f"netscand-{ident:04x}.txt".encode() + b"\0octet\0",)


def parse(data: bytes, ident: int) -> ServiceInfo | None:
    # The answer carries nothing of ours (the transfer id is the server's port): what the
    # unconnected socket of this one exchange hears from the host is taken as its answer.
    if len(data) < _OPCODE.size:
        return None
    opcode, number = _OPCODE.unpack_from(data)
    if opcode == _ERROR and number <= 8 and data.endswith(b"\0"):  # RFC 2347 adds code 8
        message = printable(data[_OPCODE.size : -1], 128)
        return ServiceInfo("tftp", extra={"error": message} if message else {})
    if opcode == _DATA and number == 1 and len(data) <= _OPCODE.size + 512:
        return ServiceInfo("tftp")
    return None
