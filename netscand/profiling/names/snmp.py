"""SNMP: an SNMPv2c GetRequest, community "public", for sysDescr.0, sysObjectID.0 and sysName.0.

The message (RFC 1901: version 1 is v2c; RFC 3416: the PDUs) is BER (X.690, wire/ber.py). The
few functions below encode and decode only what this exchange uses, with every length checked
against the bytes that are really there.
"""

from __future__ import annotations

from netscand.profiling.names.base import Reply, clean_name, never_raises
from netscand.profiling.services.base import ServiceInfo, cpe, printable
from netscand.wire import ber
from netscand.wire.ber import tlv

source = "snmp"
port = 161

COMMUNITY = b"public"
SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
# The agent's product, by the enterprise its sysObjectID lies under. 8072 is net-snmp's own
# enterprise number (IANA's enterprise-numbers registry; NET-SNMP-MIB's netSnmp), under which
# its agent reports sysObjectID, e.g. 1.3.6.1.4.1.8072.3.2.10 on Linux (NET-SNMP-TC-MIB).
_PRODUCTS = (("1.3.6.1.4.1.8072.", "Net-SNMP", cpe("net-snmp", "net-snmp", None)),)

_VERSION_2C = 1
_INTEGER, _OCTETS, _NULL, _OID, _SEQUENCE = 0x02, 0x04, 0x05, 0x06, 0x30
_GET, _RESPONSE = 0xA0, 0xA2
_MAX_ARCS = 128  # RFC 2578 section 3.5: an OID has at most 128 sub-identifiers
_MAX_VARBINDS = 8  # we ask for three; the rest of a longer list is not read


def request(ip: str, ident: int) -> bytes:
    """The GetRequest; ident is its request-id (0 < ident < 2**31, a non-negative Integer32)."""
    varbinds = b"".join(tlv(_SEQUENCE, tlv(_OID, _oid_bytes(oid)) + tlv(_NULL, b""))
                        for oid in (SYS_DESCR, SYS_OBJECT_ID, SYS_NAME))
    pdu = tlv(_GET, _integer(ident) + _integer(0) + _integer(0) + tlv(_SEQUENCE, varbinds))
    return tlv(_SEQUENCE, _integer(_VERSION_2C) + tlv(_OCTETS, COMMUNITY) + pdu)


@never_raises
def parse(data: bytes, ident: int) -> Reply | None:
    values = _varbinds(data, ident)
    if values is None:
        return None
    descr = printable(values.get((SYS_DESCR, _OCTETS), b""))
    object_id = _oid_text(values.get((SYS_OBJECT_ID, _OID), b""))
    raw_name = values.get((SYS_NAME, _OCTETS))
    name = clean_name(raw_name.decode("utf-8", "replace")) if raw_name else None
    product, product_cpe = _product(object_id)
    extra = {key: value for key, value in (("sys_descr", descr), ("sys_object_id", object_id),
                                           ("sys_name", name)) if value}
    return Reply(name, ServiceInfo("snmp", product, None, product_cpe, descr, extra), descr)


def _product(object_id: str | None) -> tuple[str | None, str | None]:
    for prefix, product, product_cpe in _PRODUCTS:
        if object_id and object_id.startswith(prefix):
            return product, product_cpe
    return None, None


class _Malformed(ValueError):
    """The bytes are not the BER this exchange uses: the message is not an answer."""


def _varbinds(data: bytes, ident: int) -> dict[tuple[str, int], bytes] | None:
    """{(OID, value tag): value} of a Response to our request, else None.

    An error-status is no reason to drop the answer: whatever it says, an SNMP agent said it.
    """
    try:
        return _response(data, ident)
    except _Malformed:
        return None


def _response(data: bytes, ident: int) -> dict[tuple[str, int], bytes] | None:
    tag, start, end = _element(data, 0, len(data))
    if tag != _SEQUENCE or end != len(data):
        return None
    version, offset = _read_integer(data, start, end)
    tag, _, offset = _element(data, offset, end)  # the community, echoed
    if version != _VERSION_2C or tag != _OCTETS:
        return None
    tag, start, end = _element(data, offset, end)
    if tag != _RESPONSE:
        return None
    request_id, offset = _read_integer(data, start, end)
    if request_id != ident:
        return None
    _, offset = _read_integer(data, offset, end)  # error-status
    _, offset = _read_integer(data, offset, end)  # error-index
    tag, offset, end = _element(data, offset, end)
    if tag != _SEQUENCE:
        return None
    values: dict[tuple[str, int], bytes] = {}
    for _ in range(_MAX_VARBINDS):
        if offset >= end:
            break
        tag, start, offset = _element(data, offset, end)
        oid_tag, oid_start, oid_end = _element(data, start, offset)
        value_tag, value_start, value_end = _element(data, oid_end, offset)
        oid = _oid_text(data[oid_start:oid_end])
        if tag != _SEQUENCE or oid_tag != _OID or oid is None:
            return None
        values[oid, value_tag] = data[value_start:value_end]
    return values


def _element(data: bytes, offset: int, end: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the element at offset, which must lie within data[:end]."""
    element = ber.head(data, offset, end)
    if element is None or element[2] > end:
        raise _Malformed("element beyond its container")
    return element


def _read_integer(data: bytes, offset: int, end: int) -> tuple[int, int]:
    """The INTEGER at offset and the offset after it."""
    tag, start, stop = _element(data, offset, end)
    if tag != _INTEGER or not 0 < stop - start <= 8:
        raise _Malformed("not an INTEGER of at most 64 bits")
    return int.from_bytes(data[start:stop], "big", signed=True), stop


def _oid_text(value: bytes) -> str | None:
    """An OBJECT IDENTIFIER's value in dotted form, or None if it is not a valid one."""
    arcs: list[int] = []
    arc = 0
    for byte in value:
        arc = arc << 7 | byte & 0x7F
        if arc >> 40:  # beyond any sub-identifier (at most 2**32 - 1, RFC 2578 section 3.5; 2.x adds 80)
            return None
        if not byte & 0x80:
            arcs.append(arc)
            arc = 0
            if len(arcs) >= _MAX_ARCS:
                return None
    if not arcs or value[-1] & 0x80:
        return None
    first, second = (arcs[0] // 40, arcs[0] % 40) if arcs[0] < 80 else (2, arcs[0] - 80)
    return ".".join(map(str, (first, second, *arcs[1:])))


def _oid_bytes(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    out = bytearray()
    for arc in (40 * arcs[0] + arcs[1], *arcs[2:]):
        chunk = [arc & 0x7F]
        while arc := arc >> 7:
            chunk.append(0x80 | arc & 0x7F)
        out += bytes(reversed(chunk))
    return bytes(out)


def _integer(value: int) -> bytes:
    return tlv(_INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))
