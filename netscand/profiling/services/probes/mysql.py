"""MySQL and MariaDB: the server sends a handshake packet first, or an error packet if it refuses us.

Packet: 3-byte little-endian length, sequence id, then protocol version 10 and a NUL-terminated
server version; MariaDB prefixes "5.5.5-" to its version for old clients' sake.
"""

from __future__ import annotations

import re

from netscand.profiling.services.base import ServiceInfo, cpe, printable, token

name = "mysql"
ports = frozenset({3306, 3307})
tls = False
payload: bytes | None = None

_HANDSHAKE_V10 = 0x0A
_ERROR = 0xFF
_MAX_GREETING = 1024  # a real greeting is ~100 bytes; a huge length is not MySQL
_VERSION = re.compile(r"\d+\.\d+\.\d+")


def parse(data: bytes) -> ServiceInfo | None:
    if len(data) < 6:
        return None
    length = int.from_bytes(data[:3], "little")
    body = data[4 : 4 + length]
    if data[3] != 0 or not 2 < length <= _MAX_GREETING or len(body) < 3:
        return None
    if body[0] == _HANDSHAKE_V10:
        raw = body[1:].split(b"\0", 1)[0].decode("latin-1")
        return _from_version(raw) if _VERSION.match(raw) else None
    if body[0] == _ERROR:
        message = body[3:].decode("utf-8", "replace")
        if "MariaDB" in message:
            return ServiceInfo("mysql", "MariaDB", None, cpe("mariadb", "mariadb", None), printable(body[3:]))
        if "MySQL" in message:
            return ServiceInfo("mysql", "MySQL", None, cpe("oracle", "mysql", None), printable(body[3:]))
    return None


def _from_version(raw: str) -> ServiceInfo:
    extra: dict[str, object] = {"server_version": raw[:64]}
    lowered = raw.lower()
    if re.search(r"[+.~-]deb\d", lowered):
        extra["os_hint"] = "Debian"
    elif "ubuntu" in lowered:
        extra["os_hint"] = "Ubuntu"
    if "mariadb" in lowered:
        version = token(raw.removeprefix("5.5.5-").split("-")[0])
        return ServiceInfo("mysql", "MariaDB", version, cpe("mariadb", "mariadb", version), raw[:64], extra)
    version = token(raw.split("-")[0])
    return ServiceInfo("mysql", "MySQL", version, cpe("oracle", "mysql", version), raw[:64], extra)
