"""SIP: an OPTIONS request (RFC 3261 section 11), answered by any SIP server or phone; the
response's Server (or User-Agent) header names the product, as "Asterisk PBX 18.10.0" or
"FreeSWITCH-mod_sofia/1.10.9"."""

from __future__ import annotations

import re

from netscand.profiling.headers import head
from netscand.profiling.services.base import ServiceInfo, cpe, token

name = "sip"
ports = frozenset({5060})
any_source_port = False

_STATUS = re.compile(r"SIP/2\.0 \d{3}\b")
_PRODUCT = re.compile(r"([A-Za-z][A-Za-z0-9_.-]{0,63}?)(?:[-/ ](?:PBX |mod_sofia/)?v?(\d[\w.+~-]{0,63}))?(?:[\s(/]|$)")
# product (lowercased) -> (product, CPE vendor, CPE product)
_PRODUCTS = {
    "asterisk": ("Asterisk", "digium", "asterisk"),
    "freeswitch": ("FreeSWITCH", "freeswitch", "freeswitch"),
    "kamailio": ("Kamailio", "kamailio", "kamailio"),
    "opensips": ("OpenSIPS", "opensips", "opensips"),
}


def requests(ip: str, ident: int) -> tuple[bytes, ...]:
    tag = f"{ident:04x}"
    return ((f"OPTIONS sip:nm@{ip} SIP/2.0\r\nVia: SIP/2.0/UDP nm;branch=z9hG4bK{tag};rport\r\n"
             f"From: <sip:nm@nm>;tag={tag}\r\nTo: <sip:nm@{ip}>\r\nCall-ID: {tag}@nm\r\n"
             "CSeq: 42 OPTIONS\r\nMax-Forwards: 70\r\nContact: <sip:nm@nm>\r\n"
             "Accept: application/sdp\r\nContent-Length: 0\r\n\r\n").encode(),)


def parse(data: bytes, ident: int) -> ServiceInfo | None:
    start, fields = head(data)
    if not _STATUS.match(start) or f"{ident:04x}@nm" not in fields.get("call-id", ""):
        return None
    server = fields.get("server") or fields.get("user-agent")
    if not server:
        return ServiceInfo("sip", extra={"status": start[8:11]})
    match = _PRODUCT.match(server)
    word = match.group(1) if match else None
    version = token(match.group(2)) if match and match.group(2) else None
    known = _PRODUCTS.get((word or "").lower())
    product = known[0] if known else token(word)
    product_cpe = cpe(known[1], known[2], version) if known else None
    return ServiceInfo("sip", product, version, product_cpe, server, {"status": start[8:11]})
