"""What the hostile services say: the bytes of each misbehaving answer, as pure functions.

DNS-shaped answers (mDNS, NetBIOS name service, DNS over TCP) share one wire format (RFC 1035
section 4.1), so one set of builders makes their loops and lies: a name that points at itself,
a pointer past the end, counts of 65535, an RDLENGTH past the end, a label past the end, and a
"pointer chain": 8000 compression pointers each pointing two bytes back (every hop goes
backwards, so even a parser that refuses loops follows them all), named by thousands of records
in one 65507-byte datagram, so a parser without a budget follows tens of millions of hops.
SNMP answers (BER, X.690) nest 10000 deep, claim lengths past the end, use the indefinite form,
carry an OID of 5000 arcs, or fill a maximum-size datagram.
"""

from __future__ import annotations

import struct

from netscand.wire import ber
from netscand.wire.ber import tlv

UDP_MAX = 65507  # the largest IPv4 UDP payload: 65535 - 20 (IP) - 8 (UDP)
TCP_DNS_MAX = 65535  # the largest message a 2-byte length prefix can announce
POINTER_SPAN = 0x3FFF  # a compression pointer's 14 bits: chains must lie below this offset
_ANSWER = 0x8400  # a response (QR), authoritative (AA)
IN, CHAOS = 1, 3
PTR, TXT, NULL, NB, NBSTAT = 12, 16, 10, 32, 33


def header(ident: int, *, qd: int = 0, an: int = 0, ns: int = 0, ar: int = 0, flags: int = _ANSWER) -> bytes:
    return struct.pack("!6H", ident, flags, qd, an, ns, ar)


def rr(name: bytes, rtype: int, rdata: bytes, *, rclass: int = IN, rdlength: int | None = None) -> bytes:
    length = len(rdata) if rdlength is None else rdlength
    return name + struct.pack("!HHIH", rtype, rclass, 10, length) + rdata


def pointer(offset: int) -> bytes:
    return struct.pack("!H", 0xC000 | offset)


def pointer_loop(ident: int, rtype: int, rclass: int = IN) -> bytes:
    """One record whose name (at offset 12) is a pointer to offset 12, itself; its data too."""
    return header(ident, an=1) + rr(pointer(12), rtype, pointer(12), rclass=rclass)


def pointer_forward(ident: int, rtype: int, rclass: int = IN) -> bytes:
    """A name that is a pointer to offset 16383, past the end of the message."""
    return header(ident, an=1) + rr(pointer(POINTER_SPAN), rtype, b"\0", rclass=rclass)


def counts_65535(ident: int, rtype: int, rclass: int = IN) -> bytes:
    """Every section claims 65535 entries; one record is there."""
    return header(ident, qd=0xFFFF, an=0xFFFF, ns=0xFFFF, ar=0xFFFF) + rr(b"\0", rtype, b"\0" * 4, rclass=rclass)


def rdlength_past_end(ident: int, rtype: int, rclass: int = IN) -> bytes:
    """A record whose RDLENGTH is 65535 with 4 bytes of data."""
    return header(ident, an=1) + rr(b"\0", rtype, b"\x01x\0\0", rclass=rclass, rdlength=0xFFFF)


def label_past_end(ident: int, rtype: int, rclass: int = IN) -> bytes:
    """A name whose first label claims 63 bytes and has 5."""
    return header(ident, an=1) + b"\x3fhosti"


def pointer_chain(ident: int, rtype: int, rclass: int = IN, size: int = UDP_MAX) -> bytes:
    """A message of exactly `size` bytes: a chain of backward pointers hidden in a first record's data, then
    as many records as fit whose names (and, for PTR, data) point at the chain's far end."""
    first_name = b"\0"
    chain_at = 12 + len(first_name) + 10  # where the first record's data starts
    chain = bytearray(b"\x01x\0")  # the one real name the chain ends in
    while chain_at + len(chain) + 2 <= min(POINTER_SPAN, size // 4):
        chain += pointer(chain_at + len(chain) - (2 if len(chain) > 3 else 3))
    top = pointer(chain_at + len(chain) - 2)
    data = top if rtype == PTR else b""
    record = rr(top, rtype, data, rclass=rclass)
    count, pad = divmod(size - chain_at - len(chain), len(record))
    body = rr(first_name, NULL, bytes(chain) + bytes(pad), rclass=rclass) + record * count
    return header(ident, an=1 + count) + body


DNS_LIES = (pointer_loop, pointer_forward, counts_65535, rdlength_past_end, label_past_end, pointer_chain)


def query_id(query: bytes) -> int | None:
    """The transaction id of a DNS-shaped query (mDNS, NetBIOS), or None if it is too short."""
    return struct.unpack_from("!H", query)[0] if len(query) >= 12 else None


def mdns_answers(query: bytes) -> list[bytes]:
    """Answers to a legacy-unicast mDNS query, each with its id (the scanner asks for a PTR)."""
    ident = query_id(query)
    return [] if ident is None else [lie(ident, PTR) for lie in DNS_LIES]


def netbios_answers(query: bytes) -> list[bytes]:
    """Answers to a NetBIOS node status request, each with its id: the DNS-shaped lies, a node
    status claiming 255 names in 20 bytes, and a maximum-size node status."""
    ident = query_id(query)
    if ident is None:
        return []
    star = query[12:46] if len(query) >= 46 else b"\x20" + b"CKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" + b"\0"
    short = rr(star, NBSTAT, b"\xff" + b"FILES".ljust(15) + b"\0\x04\0" + b"\0")
    names = b"".join(f"N{i:03d}".encode().ljust(15) + b"\x00\x04\x00" for i in range(255))
    stuffed = rr(star, NBSTAT, b"\xff" + names + b"\xaa" * (UDP_MAX - 12 - len(star) - 10 - 1 - len(names)))
    lies = [lie(ident, NBSTAT) for lie in DNS_LIES if lie is not pointer_chain]
    return [*lies, pointer_chain(ident, NB), header(ident, an=1) + short, header(ident, an=1) + stuffed]


def tcp_dns_answers(query: bytes) -> bytes:
    """Over TCP (length-prefixed): a pointer loop, then a 65535-byte pointer chain."""
    ident = query_id(query) or 0
    messages = (pointer_loop(ident, TXT, CHAOS), pointer_chain(ident, TXT, CHAOS, TCP_DNS_MAX))
    return b"".join(struct.pack("!H", len(m)) + m for m in messages)


# -- SNMP ------------------------------------------------------------------------------------------
_INTEGER, _OCTETS, _OID, _SEQUENCE, _GET, _RESPONSE = 0x02, 0x04, 0x06, 0x30, 0xA0, 0xA2
SYS_DESCR_OID = bytes.fromhex("2b06010201010100")  # 1.3.6.1.2.1.1.1.0


def _element(data: bytes, offset: int) -> tuple[int, int, int] | None:
    """(tag, value start, value end) of the BER element at offset, or None if it does not fit."""
    element = ber.head(data, offset)
    return element if element is not None and element[2] <= len(data) else None


def snmp_request_id(query: bytes) -> bytes | None:
    """The request-id element (tag, length and value) of a GetRequest, to echo as it came."""
    message = _element(query, 0)
    if message is None or message[0] != _SEQUENCE:
        return None
    offset = message[1]
    for _ in range(2):  # version, community
        element = _element(query, offset)
        if element is None:
            return None
        offset = element[2]
    pdu = _element(query, offset)
    if pdu is None or pdu[0] != _GET:
        return None
    request_id = _element(query, pdu[1])
    if request_id is None or request_id[0] != _INTEGER:
        return None
    return query[pdu[1] : request_id[2]]


def _response(request_id: bytes, varbinds: bytes, *, message_length: bytes | None = None) -> bytes:
    pdu = tlv(_RESPONSE, request_id + tlv(_INTEGER, b"\0") + tlv(_INTEGER, b"\0") + varbinds)
    inner = tlv(_INTEGER, b"\x01") + tlv(_OCTETS, b"public") + pdu
    if message_length is not None:
        return bytes((_SEQUENCE,)) + message_length + inner
    return tlv(_SEQUENCE, inner)


def _varbind(oid: bytes, value: bytes) -> bytes:
    return tlv(_SEQUENCE, tlv(_OID, oid) + value)


def snmp_answers(query: bytes) -> list[bytes]:
    """Responses to a GetRequest, each with its request-id."""
    request_id = snmp_request_id(query)
    if request_id is None:
        return []
    nested = tlv(_OCTETS, b"")
    for _ in range(10_000):  # 6 bytes a level: 60 kB of SEQUENCE in SEQUENCE
        nested = tlv(_SEQUENCE, nested, long_form=True)
    descr = tlv(_SEQUENCE, _varbind(SYS_DESCR_OID, nested))
    long_oid = b"\x2b" + b"\x81\x01" * 5000
    one = _varbind(SYS_DESCR_OID, tlv(_OCTETS, b"hostile"))
    many = one * ((UDP_MAX - 64) // len(one))
    big_descr = tlv(_OCTETS, b"hostile sysDescr " * ((UDP_MAX - 80) // 17))
    return [
        _response(request_id, descr),
        _response(request_id, tlv(_SEQUENCE, one), message_length=b"\x84\x7f\xff\xff\xff"),
        _response(request_id, tlv(_SEQUENCE, one), message_length=b"\x80"),  # indefinite: SNMP forbids it
        _response(request_id, tlv(_SEQUENCE, _varbind(long_oid, tlv(_OCTETS, b"x")))),
        _response(request_id, tlv(_SEQUENCE, many)),
        _response(request_id, tlv(_SEQUENCE, _varbind(SYS_DESCR_OID, big_descr))),
    ]


# -- TCP services ------------------------------------------------------------------------------------
DRIP_TEXT = b"220-hostile lab FTP, one byte at a time "
ENDLESS_CHUNK = b"220-hostile lab ESMTP, endless " * 2048  # 62 kB a write, no end to the line
TITLE_BYTES = 64 * 1024
TITLE_FRAGMENTS = 11_000


def http_page() -> bytes:
    """An HTTP/1.0 answer: many "<title" fragments that never close, then a 64 KiB title."""
    body = (b"<html><head>" + b"<title" * TITLE_FRAGMENTS + b"<title>" + b"T" * TITLE_BYTES
            + b"</title></head><body></body></html>")
    head = (b"HTTP/1.0 200 OK\r\nServer: hostile-lab\r\nContent-Type: text/html\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
    return head + body
