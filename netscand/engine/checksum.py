"""Internet checksum (RFC 1071), whole and incremental.

Templates carry a precomputed sum of their fixed words; per probe only the patched words are
added and folded, which costs a few integer operations instead of a pass over the header.
"""

from __future__ import annotations


def ones_sum(data: bytes) -> int:
    """Unfolded one's-complement sum of big-endian 16-bit words (odd length padded)."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    return sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))


def finish(total: int) -> int:
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def checksum(data: bytes) -> int:
    return finish(ones_sum(data))


