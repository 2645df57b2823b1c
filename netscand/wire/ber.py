"""BER (X.690) type-length-value, as SNMP uses it: one-byte tags, definite lengths of at most
4 bytes. Reading is total and bounded: it looks only at the bytes of the head it is asked for."""

from __future__ import annotations


def tlv(tag: int, value: bytes, *, long_form: bool = False) -> bytes:
    """The element: short-form length under 128 bytes, else the minimal long form;
    `long_form` forces the 4-byte long form (legal BER a parser must take as well)."""
    size = len(value)
    if long_form:
        return bytes((tag, 0x84)) + size.to_bytes(4, "big") + value
    if size < 0x80:
        return bytes((tag, size)) + value
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + value


def head(data: bytes, offset: int, end: int | None = None) -> tuple[int, int, int] | None:
    """(tag, value start, value end) of the element at `offset`, whose head (tag and length)
    must lie within data[:end]; None if it does not, or its length is indefinite (which SNMP
    forbids) or over 4 bytes. The value's end is what the length says: a caller reading a
    capture cut short checks it against what it has, or not."""
    end = len(data) if end is None else min(end, len(data))
    if offset < 0 or offset + 2 > end:
        return None
    tag, first, start = data[offset], data[offset + 1], offset + 2
    length = first
    if first & 0x80:
        size = first & 0x7F
        if not 0 < size <= 4 or start + size > end:
            return None
        length, start = int.from_bytes(data[start : start + size], "big"), start + size
    return tag, start, start + length
