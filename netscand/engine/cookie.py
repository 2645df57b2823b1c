"""Stateless reply matching: the SYN's sequence number is a keyed hash of the probe's addressing.

A reply is ours only if it acknowledges cookie+1 (or, inside an ICMP error, quotes the cookie
itself) for the same target, target port and source port. The low bits carry the plan slot, so
the receiver knows which plan's key to check without any per-probe table (masscan's syn-cookie).

The hash is split in two so that a probe costs integer arithmetic, not a blake2b call (which
was ~14 % of a worker's CPU, paid twice per probe: to send, and to match the reply):

- per plan and host, once when the plan is read: a 64-bit secret `add`, blake2b of the plan's
  key and the host's address, and per plan an odd 64-bit `mul` (blake2b of the key);
- per probe: x = dport << 16 | sport, and the cookie is bits 34..63 of (x + add) * mul mod 2^64,
  with the plan slot in the low 2 bits.

Why it is enough. The threat is an off-path host forging a reply that a scanned host's port is
open or closed: it sees none of our SYNs to that host, so it must guess that host's cookie. For
any fixed x, x + add is uniform over the 2^64 values of a uniform `add`, multiplying by an odd
`mul` permutes them, so the 30 hashed bits are uniform: one guess in 2^30 succeeds, as with
blake2b. Each host's `add` is a keyed PRF's output for that host alone, so what one host sees
(the cookies of the probes sent to it, from which it might solve its own `add`) tells nothing
about another host's; and what a host says about itself it may always lie about. Someone on
the path sees the SYNs and could answer them under any cookie, keyed hash or not.
"""

from __future__ import annotations

from hashlib import blake2b

SLOT_BITS = 2
SLOT_MASK = (1 << SLOT_BITS) - 1
HASH_MASK = 0xFFFFFFFF & ~SLOT_MASK  # the bits of the mixed product a cookie keeps


def host_secret(key: bytes, ip: int) -> int:
    """A plan's secret towards one host: `add` (module docstring)."""
    return int.from_bytes(blake2b(ip.to_bytes(4, "big"), key=key, digest_size=8, person=b"cookie-host").digest(), "big")


def multiplier(key: bytes) -> int:
    """A plan's odd multiplier: `mul` (module docstring)."""
    return int.from_bytes(blake2b(b"", key=key, digest_size=8, person=b"cookie-mul").digest(), "big") | 1


def mix(add: int, mul: int, slot: int, port: int, sport: int) -> int:
    return ((((port << 16 | sport) + add) * mul >> 32) & HASH_MASK) | slot


class Cookies:
    """One plan's cookies, its hosts' secrets derived once. A hot path may inline mix() with
    `adds` and `mul`; the result must stay equal to cookie()'s."""

    def __init__(self, key: bytes, slot: int, hosts: tuple[int, ...]) -> None:
        self.slot = slot
        self.mul = multiplier(key)
        self.adds = [host_secret(key, ip) for ip in hosts]  # by host index

    def __call__(self, host: int, port: int, sport: int) -> int:
        """The cookie of a probe to the plan's host index `host`."""
        return mix(self.adds[host], self.mul, self.slot, port, sport)


def cookie(key: bytes, slot: int, ip: int, port: int, sport: int) -> int:
    """The same cookie as Cookies', from the key: for tests and tools, not per probe."""
    return mix(host_secret(key, ip), multiplier(key), slot, port, sport)


def slot_of(value: int) -> int:
    return value & SLOT_MASK
