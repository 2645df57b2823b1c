"""IMAP: the server greets first with an untagged OK or PREAUTH (RFC 9051 section 7.1)."""

from __future__ import annotations

from netscand.profiling.services.base import ServiceInfo, lines, printable
from netscand.profiling.services.probes import mailproducts

name = "imap"
ports = frozenset({143, 993})
tls = False
payload: bytes | None = None


def parse(data: bytes) -> ServiceInfo | None:
    text = lines(data, 4096)
    if not text or not text[0].startswith(("* OK", "* PREAUTH")):
        return None
    greeting = text[0]
    product, version, name_cpe, extra = mailproducts.identify(greeting)
    if product is None and "IMAP" not in greeting.upper():
        return None  # "* OK" alone is too little to name IMAP
    return ServiceInfo("imap", product, version, name_cpe, printable(data), extra)
