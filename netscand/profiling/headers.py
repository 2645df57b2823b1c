"""The start line and headers of an HTTP-like message (HTTP, SSDP's HTTPU, SIP), read at a bounded cost."""

from __future__ import annotations

HEAD_MAX = 8 * 1024  # more than any SSDP or SIP header block: the rest is not read
MAX_HEADERS = 64


def head(data: bytes, limit: int = HEAD_MAX) -> tuple[str, dict[str, str]]:
    """(start line, {lowercased name: value}) of the first `limit` bytes; the first of repeats
    wins, and the first MAX_HEADERS lines and 256 bytes of a value are read."""
    lines = data[:limit].decode("latin-1").split("\r\n")
    fields: dict[str, str] = {}
    for line in lines[1 : MAX_HEADERS + 1]:
        if not line:
            break
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip()[:256])
    return lines[0], fields
