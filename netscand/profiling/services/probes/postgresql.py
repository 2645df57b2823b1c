"""PostgreSQL: a v3 StartupMessage; the server answers with an authentication request or an error.

The backend never states its version before authentication, except in the ParameterStatus
messages that follow AuthenticationOk on a server that trusts anyone: those are read when present.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from netscand.profiling.services.base import ServiceInfo, cpe, printable, token

name = "postgresql"
ports = frozenset({5432, 5433})
tls = False


def _startup() -> bytes:
    params = b"user\0netscand\0database\0netscand\0application_name\0netscand\0\0"
    return struct.pack("!II", 8 + len(params), 196608) + params  # 196608: protocol 3.0


payload: bytes | None = _startup()

_AUTH_CODES = frozenset({0, 2, 3, 5, 7, 8, 9, 10, 11, 12})  # AuthenticationOk .. SASLFinal
_MAX_MESSAGE = 64 * 1024


def parse(data: bytes) -> ServiceInfo | None:
    messages = list(_messages(data))
    if not messages or not (_is_auth_request(*messages[0]) or _error_fields(*messages[0])):
        return None
    extra: dict[str, object] = {}
    if _is_auth_request(*messages[0]):
        extra["auth"] = struct.unpack("!I", messages[0][1][:4])[0]
    error = next((fields for m in messages if (fields := _error_fields(*m))), None)
    if error:
        extra["error"] = {"code": error["C"][:16], "message": error.get("M", "")[:200]}
    version = token(dict(_parameters(messages)).get("server_version"))
    banner = printable(error.get("M", "").encode()) if error else None
    return ServiceInfo("postgresql", "PostgreSQL", version, cpe("postgresql", "postgresql", version), banner, extra)


def _is_auth_request(kind: bytes, body: bytes) -> bool:
    return kind == b"R" and len(body) >= 4 and struct.unpack("!I", body[:4])[0] in _AUTH_CODES


def _error_fields(kind: bytes, body: bytes) -> dict[str, str] | None:
    """The fields of an ErrorResponse (one-letter code, then text), or None if it is not one."""
    if kind != b"E" or body[:1] not in (b"S", b"V"):
        return None
    fields = {f[:1].decode("latin-1"): f[1:].decode("utf-8", "replace") for f in body.split(b"\0") if f}
    return fields if "C" in fields else None


def _messages(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, body) of each whole backend message: type byte, then a length that counts itself."""
    offset = 0
    while offset + 5 <= len(data):
        kind = data[offset : offset + 1]
        length = struct.unpack("!I", data[offset + 1 : offset + 5])[0]
        if not 4 <= length <= _MAX_MESSAGE or offset + 1 + length > len(data):
            return
        yield kind, data[offset + 5 : offset + 1 + length]
        offset += 1 + length


def _parameters(messages: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    out = []
    for kind, body in messages:
        parts = body.split(b"\0")
        if kind == b"S" and len(parts) >= 2:
            out.append((parts[0].decode("latin-1"), parts[1].decode("latin-1")))
    return out
