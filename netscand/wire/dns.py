"""DNS names in their wire form (RFC 1035 section 3.1)."""

from __future__ import annotations


def name(*labels: bytes) -> bytes:
    """The uncompressed name: each label after its length, then the root's empty label."""
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\0"
