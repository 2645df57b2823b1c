"""VNC: the server sends its RFB ProtocolVersion first, "RFB 003.008\\n" (RFC 6143 section 7.1.1)."""

from __future__ import annotations

import re

from netscand.profiling.services.base import ServiceInfo, printable

name = "vnc"
ports = frozenset(range(5900, 5911))
tls = False
payload: bytes | None = None

_VERSION = re.compile(rb"RFB (\d{3})\.(\d{3})\n")


def parse(data: bytes) -> ServiceInfo | None:
    match = _VERSION.match(data)
    if not match:
        return None
    protocol = f"{int(match.group(1))}.{int(match.group(2))}"
    return ServiceInfo("vnc", banner=printable(match.group(0)), extra={"protocol": protocol})
