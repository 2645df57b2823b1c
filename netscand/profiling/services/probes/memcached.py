"""memcached: the text protocol's "version" command, answered "VERSION 1.6.18\r\n".

UDP memcached (profiling/udp/memcached.py) answers the same line behind its frame header and
reads it with this parse.
"""

from __future__ import annotations

import re

from netscand.profiling.services.base import ServiceInfo, cpe, token

name = "memcached"
ports = frozenset({11211})
tls = False
payload: bytes | None = b"version\r\n"

_VERSION = re.compile(rb"VERSION ([^\r\n]{1,64})\r\n")


def parse(data: bytes) -> ServiceInfo | None:
    match = _VERSION.match(data)
    if match is None:
        return None
    version = token(match.group(1).decode("latin-1"))
    return ServiceInfo("memcached", "memcached", version, cpe("memcached", "memcached", version))
