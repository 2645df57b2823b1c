"""IPv4 target specifications, kept as merged address ranges rather than address lists.

Ranges keep a /8 as cheap as one host, and `index`/`at` let the engine walk the
(host, port) space in a permuted order without ever materialising the addresses.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate

Range = tuple[int, int]
Resolver = Callable[[str], list[str]]

_MAX_ADDRESS = 2**32 - 1
# Anything made only of digits and dots is meant as an address; without this, a
# typo like "10.0.0" would reach getaddrinfo, which reads it as 10.0.0.0.
_NUMERIC = re.compile(r"[0-9.]+")
_PREFIX = re.compile(r"[0-9]{1,2}")
# Only digits and dots around the dash: "1-2-3.example.com" is a hostname, not a range.
_RANGE = re.compile(r"[0-9.]+-[0-9.]+")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")


class TargetError(ValueError):
    """A target specification that cannot be used; the message names the bad part."""


@dataclass(frozen=True)
class Targets:
    """A set of IPv4 addresses as sorted, merged, inclusive (first, last) ranges."""

    ranges: tuple[Range, ...] = ()
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)
    # _offsets[i] is how many addresses come before ranges[i]; the last entry is the count.
    _offsets: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        merged = _merge(self.ranges)
        object.__setattr__(self, "ranges", merged)
        object.__setattr__(self, "_starts", tuple(lo for lo, _ in merged))
        sizes = (hi - lo + 1 for lo, hi in merged)
        object.__setattr__(self, "_offsets", tuple(accumulate(sizes, initial=0)))

    @property
    def count(self) -> int:
        return self._offsets[-1]

    def __iter__(self) -> Iterator[ipaddress.IPv4Address]:
        for lo, hi in self.ranges:
            for addr in range(lo, hi + 1):
                yield ipaddress.IPv4Address(addr)

    def __contains__(self, addr: object) -> bool:
        if isinstance(addr, str | ipaddress.IPv4Address):
            try:
                addr = int(ipaddress.IPv4Address(addr))
            except ValueError:
                return False
        if isinstance(addr, bool) or not isinstance(addr, int):
            return False
        return self._range_of(addr) is not None

    def index(self, addr: int) -> int:
        """Position of `addr` in iteration order; KeyError if it is not a target."""
        i = self._range_of(addr)
        if i is None:
            raise KeyError(str(ipaddress.IPv4Address(addr)) if 0 <= addr <= _MAX_ADDRESS else addr)
        return self._offsets[i] + addr - self.ranges[i][0]

    def at(self, position: int) -> int:
        """The address at `position` in iteration order (the inverse of `index`)."""
        if not 0 <= position < self.count:
            raise IndexError(f"target position {position} out of range for {self.count} addresses")
        i = bisect_right(self._offsets, position) - 1
        return self.ranges[i][0] + position - self._offsets[i]

    def split(self, max_count: int) -> list[Targets]:
        """Consecutive chunks, in iteration order, of at most `max_count` addresses each."""
        if max_count < 1:
            raise ValueError(f"max_count must be at least 1, not {max_count}")
        chunks: list[Targets] = []
        current: list[Range] = []
        room = max_count
        for lo, hi in self.ranges:
            while lo <= hi:
                take = min(room, hi - lo + 1)
                current.append((lo, lo + take - 1))
                lo += take
                room -= take
                if room == 0:
                    chunks.append(Targets(tuple(current)))
                    current, room = [], max_count
        if current:
            chunks.append(Targets(tuple(current)))
        return chunks

    def _range_of(self, addr: int) -> int | None:
        i = bisect_right(self._starts, addr) - 1
        if i >= 0 and addr <= self.ranges[i][1]:
            return i
        return None


def _merge(ranges: Iterable[Range]) -> tuple[Range, ...]:
    merged: list[Range] = []
    for lo, hi in sorted(ranges):
        if not 0 <= lo <= hi <= _MAX_ADDRESS:
            raise ValueError(f"invalid IPv4 range ({lo}, {hi})")
        # Adjacent ranges merge too, so equal sets always compare equal.
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def exclude(targets: Targets, other: Targets) -> Targets:
    """The addresses of `targets` that are not in `other`."""
    kept: list[Range] = []
    cuts = other.ranges
    j = 0
    for lo, hi in targets.ranges:
        # Ranges on both sides are sorted, so cuts ending before this range never matter again.
        while j < len(cuts) and cuts[j][1] < lo:
            j += 1
        k = j
        while lo <= hi and k < len(cuts) and cuts[k][0] <= hi:
            if cuts[k][0] > lo:
                kept.append((lo, cuts[k][0] - 1))
            lo = max(lo, cuts[k][1] + 1)
            k += 1
        if lo <= hi:
            kept.append((lo, hi))
    return Targets(tuple(kept))


def parse_targets(spec: str | Iterable[str], resolve: Resolver | None = None) -> Targets:
    """Targets from addresses, CIDR blocks, ranges and hostnames, comma or space separated.

    Hostnames are resolved once, here, with `resolve` (default: all A records from
    getaddrinfo), so a scan never changes targets half way through.
    """
    pieces = [spec] if isinstance(spec, str) else list(spec)
    tokens: list[str] = []
    for piece in pieces:
        if not isinstance(piece, str):
            raise TargetError(f"target must be a string, not {piece!r}")
        tokens.extend(token for token in re.split(r"[\s,]+", piece) if token)
    if not tokens:
        raise TargetError("empty target specification")
    resolved: dict[str, list[Range]] = {}
    ranges: list[Range] = []
    for token in tokens:
        ranges.extend(_parse_token(token, resolve or _getaddrinfo, resolved))
    return Targets(tuple(ranges))


def _parse_token(token: str, resolve: Resolver, resolved: dict[str, list[Range]]) -> list[Range]:
    if ":" in token:
        _reject_ipv6(token)
    if "/" in token:
        return [_parse_cidr(token)]
    if _RANGE.fullmatch(token):
        return [_parse_range(token)]
    if _NUMERIC.fullmatch(token):
        addr = _address(token, token)
        return [(addr, addr)]
    if not _HOSTNAME.fullmatch(token):
        raise TargetError(f"malformed target {token!r}")
    if token not in resolved:
        resolved[token] = _resolve(token, resolve)
    return resolved[token]


def _reject_ipv6(token: str) -> None:
    head = re.split(r"[/-]", token, maxsplit=1)[0]
    try:
        ipaddress.IPv6Address(head)
    except ValueError:
        raise TargetError(f"malformed target {token!r}") from None
    raise TargetError(f"IPv6 targets are not supported yet: {token!r}")


def _parse_cidr(token: str) -> Range:
    addr_text, _, prefix_text = token.partition("/")
    addr = _address(addr_text, token)
    if not _PREFIX.fullmatch(prefix_text) or int(prefix_text) > 32:
        raise TargetError(f"bad prefix length in {token!r} (expected 0-32)")
    # Host bits are allowed, as in nmap: 198.18.0.5/24 means the whole /24.
    host_bits = 32 - int(prefix_text)
    lo = addr >> host_bits << host_bits
    return lo, lo + (1 << host_bits) - 1


def _parse_range(token: str) -> Range:
    first, _, last = token.partition("-")
    lo = _address(first, token)
    if "." in last:
        hi = _address(last, token)
    elif int(last) <= 255:
        # nmap's short form: 198.18.0.1-20 replaces only the last octet.
        hi = lo & ~0xFF | int(last)
    else:
        raise TargetError(f"malformed range end in {token!r}")
    if lo > hi:
        raise TargetError(f"reversed range {token!r}")
    return lo, hi


def _address(text: str, token: str) -> int:
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        where = "" if text == token else f" in {token!r}"
        raise TargetError(f"malformed IPv4 address {text!r}{where}") from None


def _resolve(host: str, resolve: Resolver) -> list[Range]:
    try:
        addresses = resolve(host)
    except (OSError, UnicodeError):
        addresses = []
    if not addresses:
        raise TargetError(f"hostname {host!r} does not resolve to an IPv4 address")
    return [(addr, addr) for addr in (_address(text, host) for text in addresses)]


def _getaddrinfo(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
