"""Redis: INFO server, answered as a RESP bulk string, or an error that still names Redis."""

from __future__ import annotations

import re

from netscand.profiling.services.base import ServiceInfo, cpe, printable, token

name = "redis"
ports = frozenset({6379, 6380})
tls = False
payload: bytes | None = b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"

_FIELD = re.compile(rb"^(redis_version|valkey_version|server_name|os|redis_mode):([^\r\n]{0,128})", re.MULTILINE)
# Errors a Redis sends before INFO is allowed: no password given, or protected mode.
_ERRORS = (b"-NOAUTH", b"-DENIED Redis", b"-ERR operation not permitted")


def parse(data: bytes) -> ServiceInfo | None:
    if data.startswith(_ERRORS):
        return ServiceInfo("redis", "Redis", None, cpe("redis", "redis", None), printable(data))
    if not data.startswith(b"$"):
        return None
    fields = {k.decode(): v.decode("latin-1") for k, v in _FIELD.findall(data[: 64 * 1024])}
    if "redis_version" not in fields:
        return None
    extra = {k: fields[k] for k in ("os", "redis_mode") if k in fields}
    if fields.get("server_name") == "valkey" and "valkey_version" in fields:
        version = token(fields["valkey_version"])
        return ServiceInfo("redis", "Valkey", version, cpe("lfprojects", "valkey", version), None, extra)
    version = token(fields["redis_version"])
    return ServiceInfo("redis", "Redis", version, cpe("redis", "redis", version), None, extra)
