"""DNS over TCP: a CHAOS TXT query for version.bind, which BIND, dnsmasq, Unbound and others answer.

Over TCP every message has a 2-byte length prefix (RFC 1035 section 4.2.2). A server that refuses
the query still answers with our id and the QR bit, which is enough to name DNS.
"""

from __future__ import annotations

import re
import struct

from netscand.profiling.services.base import ServiceInfo, cpe, token

name = "dns"
ports = frozenset({53, 5353})
tls = False

_ID = 0x6E73  # "ns": a fixed id; over TCP nothing else can answer on this connection
_TXT, _CHAOS = 16, 3


def _query() -> bytes:
    qname = b"".join(bytes((len(label),)) + label for label in (b"version", b"bind")) + b"\0"
    message = struct.pack("!6H", _ID, 0, 1, 0, 0, 0) + qname + struct.pack("!2H", _TXT, _CHAOS)
    return struct.pack("!H", len(message)) + message


payload: bytes | None = _query()

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
    if len(data) < 14:
        return None
    length, ident, flags, qdcount, ancount = struct.unpack("!5H", data[:10])
    if ident != _ID or not flags & 0x8000 or length < 12 or length > len(data) - 2:
        return None
    message = data[2 : 2 + length]
    rcode = flags & 0xF
    texts = _answers(message, qdcount, ancount)
    extra: dict[str, object] = {"rcode": rcode}
    if texts:
        extra["version_bind"] = texts[0][:128]
        for product, vendor, cpe_product, pattern in _PRODUCTS:
            match = pattern.match(texts[0])
            if match:
                version = token(match.group(1))
                hint = {"os_hint": "Debian"} if "Debian" in texts[0] else {}
                return ServiceInfo("dns", product, version, cpe(vendor, cpe_product, version), None, extra | hint)
    return ServiceInfo("dns", extra=extra)


def _answers(message: bytes, qdcount: int, ancount: int) -> list[str]:
    """The TXT strings of the answer section; [] if it is absent or malformed."""
    try:
        offset = 12
        for _ in range(min(qdcount, 4)):
            offset = _skip_name(message, offset) + 4
        texts = []
        for _ in range(min(ancount, 8)):
            offset = _skip_name(message, offset)
            rtype, _, _, rdlength = struct.unpack("!HHIH", message[offset : offset + 10])
            rdata = message[offset + 10 : offset + 10 + rdlength]
            offset += 10 + rdlength
            if rtype == _TXT and rdata:
                texts.append(rdata[1 : 1 + rdata[0]].decode("utf-8", "replace"))
        return texts
    except (struct.error, IndexError):
        return []


def _skip_name(message: bytes, offset: int) -> int:
    """Offset just past a (possibly compressed) domain name."""
    for _ in range(128):  # at most 127 labels fit in 255 bytes: bounds a hostile loop
        size = message[offset]
        if size == 0:
            return offset + 1
        if size & 0xC0 == 0xC0:
            return offset + 2  # a pointer ends the name
        offset += 1 + size
    raise IndexError("name too long")
