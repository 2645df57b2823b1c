"""DNS over TCP: a CHAOS TXT query for version.bind, which BIND, dnsmasq, Unbound and others answer.

Over TCP every message has a 2-byte length prefix (RFC 1035 section 4.2.2). A server that refuses
the query still answers with our id and the QR bit, which is enough to name DNS.
"""

from __future__ import annotations

import re
import struct

from netscand.profiling import dnswire
from netscand.profiling.services.base import ServiceInfo, cpe, token
from netscand.wire import dns as wire_dns

name = "dns"
ports = frozenset({53, 5353})
tls = False

_ID = 0x6E73  # "ns": a fixed id; over TCP nothing else can answer on this connection
_TXT, _CHAOS = 16, 3


def query(ident: int) -> bytes:
    """The query message with this id (no length prefix: UDP sends it as it is)."""
    return struct.pack("!6H", ident, 0, 1, 0, 0, 0) + wire_dns.name(b"version", b"bind") + struct.pack("!2H", _TXT, _CHAOS)


payload: bytes | None = struct.pack("!H", len(query(_ID))) + query(_ID)

# version.bind strings -> (product, CPE vendor, CPE product, pattern with the version as group 1)
_PRODUCTS = (
    ("dnsmasq", "thekelleys", "dnsmasq", re.compile(r"dnsmasq-(\S+)")),
    ("Unbound", "nlnetlabs", "unbound", re.compile(r"unbound (\S+)")),
    ("PowerDNS Recursor", "powerdns", "recursor", re.compile(r"PowerDNS Recursor (\S+)")),
    ("PowerDNS Authoritative Server", "powerdns", "authoritative", re.compile(r"PowerDNS Authoritative Server (\S+)")),
    ("Knot DNS", "cz.nic", "knot_dns", re.compile(r"Knot DNS (\S+)")),
    ("BIND", "isc", "bind", re.compile(r"(\d+\.\d+\.\d+)\S*")),  # BIND answers with a bare version
)


def parse(data: bytes) -> ServiceInfo | None:
    length = int.from_bytes(data[:2], "big")
    message = data[2 : 2 + length]
    return parse_message(message, _ID) if len(message) == length else None


def parse_message(message: bytes, ident: int) -> ServiceInfo | None:
    """A response to query(ident) (over TCP or UDP), read for the version.bind answer."""
    head = dnswire.header(message)
    if head is None or head.ident != ident or not head.flags & dnswire.QR:
        return None
    texts = _texts(message)
    extra: dict[str, object] = {"rcode": head.flags & 0xF}
    if texts:
        extra["version_bind"] = texts[0][:128]
        for product, vendor, cpe_product, pattern in _PRODUCTS:
            match = pattern.match(texts[0])
            if match:
                version = token(match.group(1))
                hint = {"os_hint": "Debian"} if "Debian" in texts[0] else {}
                return ServiceInfo("dns", product, version, cpe(vendor, cpe_product, version), None, extra | hint)
    return ServiceInfo("dns", extra=extra)


def _texts(message: bytes) -> list[str]:
    """The first string of each TXT record in the answer section; [] if it is absent or malformed."""
    texts = []
    for record in dnswire.answers(message) or ():
        rdata = record.rdata(message)
        if record.rtype == _TXT and rdata:
            texts.append(rdata[1 : 1 + rdata[0]].decode("utf-8", "replace"))
    return texts
