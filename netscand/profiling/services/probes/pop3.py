"""POP3: the server greets first with "+OK" (RFC 1939 section 4)."""

from __future__ import annotations

from netscand.profiling.services.base import ServiceInfo, lines, printable
from netscand.profiling.services.probes import mailproducts

name = "pop3"
ports = frozenset({110, 995})
tls = False
payload: bytes | None = None


def parse(data: bytes) -> ServiceInfo | None:
    text = lines(data, 4096)
    if not text or not text[0].startswith("+OK"):
        return None
    product, version, name_cpe, extra = mailproducts.identify(text[0])
    return ServiceInfo("pop3", product, version, name_cpe, printable(data), extra)
