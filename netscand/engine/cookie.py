"""Stateless reply matching: the SYN's sequence number is a keyed hash of the probe's addressing.

A reply is ours only if it acknowledges cookie+1 (or, inside an ICMP error, quotes the cookie
itself) for the same target, target port and source port. The low bits carry the plan slot, so
the receiver knows which plan's key to check without any per-probe table (masscan's syn-cookie).
"""

from __future__ import annotations

from hashlib import blake2b

SLOT_BITS = 2
SLOT_MASK = (1 << SLOT_BITS) - 1


def cookie(key: bytes, slot: int, ip: int, port: int, sport: int) -> int:
    data = ip.to_bytes(4, "big") + port.to_bytes(2, "big") + sport.to_bytes(2, "big")
    h = int.from_bytes(blake2b(data, key=key, digest_size=4).digest(), "big")
    return (h & ~SLOT_MASK & 0xFFFFFFFF) | slot


def slot_of(value: int) -> int:
    return value & SLOT_MASK
