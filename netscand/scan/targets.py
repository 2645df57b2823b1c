"""IPv4 target specifications, kept as merged address ranges rather than address lists.

Ranges keep a /8 as cheap as one host, and `index`/`at` let the engine walk the
(host, port) space in a permuted order without ever materialising the addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Protocol

from netscand.engine.ranges import merge

Range = tuple[int, int]
Resolver = Callable[[str], list[str]]

# Tokens (addresses, blocks, ranges, names) in one specification: each costs routing and
# policy work in the control process; more than this is written as blocks and ranges.
MAX_TARGET_TOKENS = 1024
# Distinct hostnames in one specification: each is a resolver round trip.
MAX_HOSTNAMES = 16
# For all the hostnames of one specification together: a resolver that does not answer in
# this long makes the request fail naming the name, rather than hold it for glibc's retries.
RESOLVE_DEADLINE_S = 5.0
# Its own threads, not asyncio's default executor: lookups stuck in a slow resolver occupy
# these, never the threads the rest of the control process runs its blocking work on.
_RESOLVER = futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="netscand-resolve")
_SHOWN = 60  # characters of a bad token quoted back in an error

_MAX_ADDRESS = 2**32 - 1
_TOKEN = re.compile(r"[^\s,]+")
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

    def addresses(self) -> Iterator[int]:
        """The addresses as integers, in iteration order."""
        for lo, hi in self.ranges:
            yield from range(lo, hi + 1)

    def window(self, start: int, stop: int) -> Targets:
        """The addresses at positions [start, stop) of iteration order: a chunk of a /8 costs
        what its ranges do, never what its addresses would."""
        start, stop = max(start, 0), min(stop, self.count)
        if start >= stop:
            return Targets()
        first, last = self.at(start), self.at(stop - 1)
        i, j = self._range_of(first), self._range_of(last)
        assert i is not None and j is not None
        inner = self.ranges[i : j + 1]
        return Targets(((first, inner[0][1]), *inner[1:-1], (inner[-1][0], last)) if i < j
                       else ((first, last),))

    def overlaps(self, other: Targets) -> bool:
        """Whether an address is in both: per range of ours, the last of `other`'s starting
        within it is the one that would reach it (other's ranges are sorted and disjoint)."""
        for lo, hi in self.ranges:
            i = bisect_right(other._starts, hi) - 1
            if i >= 0 and other.ranges[i][1] >= lo:
                return True
        return False

    def _range_of(self, addr: int) -> int | None:
        i = bisect_right(self._starts, addr) - 1
        if i >= 0 and addr <= self.ranges[i][1]:
            return i
        return None


def _merge(ranges: Iterable[Range]) -> tuple[Range, ...]:
    ranges = tuple(ranges)
    for lo, hi in ranges:
        if not 0 <= lo <= hi <= _MAX_ADDRESS:
            raise ValueError(f"invalid IPv4 range ({lo}, {hi})")
    return merge(ranges)


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


def parse_targets(spec: str | Iterable[str], resolve: Resolver | None = None,
                  deadline: float = RESOLVE_DEADLINE_S) -> Targets:
    """Targets from addresses, CIDR blocks, ranges and hostnames, comma or space separated.

    Hostnames are resolved once, here, with `resolve` (default: all A records from
    getaddrinfo), so a scan never changes targets half way through; all of them within
    `deadline` seconds, in the module's own resolver threads. Blocks the caller while they
    resolve: the daemon uses `parse_targets_async`.
    """
    ranges, names = _parse_literal(spec)
    lookups = {name: _RESOLVER.submit(_lookup, name, resolve or _getaddrinfo) for name in names}
    futures.wait(lookups.values(), timeout=deadline)
    return Targets(tuple(ranges) + _resolved(lookups, deadline))


async def parse_targets_async(spec: str | Iterable[str], resolve: Resolver | None = None,
                              deadline: float = RESOLVE_DEADLINE_S) -> Targets:
    """`parse_targets` for an event loop: the loop waits for the resolver threads without
    lending them one of its executor's."""
    ranges, names = _parse_literal(spec)
    loop = asyncio.get_running_loop()
    lookups = {name: loop.run_in_executor(_RESOLVER, _lookup, name, resolve or _getaddrinfo)
               for name in names}
    if lookups:
        await asyncio.wait(lookups.values(), timeout=deadline)
    return Targets(tuple(ranges) + _resolved(lookups, deadline))


class _Lookup(Protocol):
    def done(self) -> bool: ...
    def cancel(self) -> bool: ...
    def result(self) -> list[Range]: ...


def _resolved(lookups: Mapping[str, _Lookup], deadline: float) -> tuple[Range, ...]:
    """The addresses of finished lookups in the order names were given; the first name that
    failed or did not answer in time is the error (and lookups not started yet are dropped)."""
    ranges: list[Range] = []
    try:
        for name, lookup in lookups.items():
            if not lookup.done():
                raise TargetError(f"hostname {_shown(name)} did not resolve within {deadline:g} s")
            ranges.extend(lookup.result())
    finally:
        for lookup in lookups.values():
            lookup.cancel()
    return tuple(ranges)


def _parse_literal(spec: str | Iterable[str]) -> tuple[list[Range], list[str]]:
    """The ranges the specification writes out, and the distinct hostnames it names."""
    ranges: list[Range] = []
    names: dict[str, None] = {}
    for token in _tokens(spec):
        parsed = _parse_token(token)
        if parsed is not None:
            ranges.append(parsed)
        elif token not in names:
            if len(names) == MAX_HOSTNAMES:
                raise TargetError(f"too many hostnames in target specification: at most {MAX_HOSTNAMES}")
            names[token] = None
    return ranges, list(names)


def _tokens(spec: str | Iterable[str]) -> Iterator[str]:
    """The tokens, checked against the cap as they are found: a megabyte of them is never
    split into a list first."""
    pieces = [spec] if isinstance(spec, str) else spec
    count = 0
    for piece in pieces:
        if not isinstance(piece, str):
            raise TargetError(f"target must be a string, not {type(piece).__name__}")
        for match in _TOKEN.finditer(piece):
            count += 1
            if count > MAX_TARGET_TOKENS:
                raise TargetError("too many entries in target specification: at most "
                                  f"{MAX_TARGET_TOKENS} addresses, blocks, ranges or hostnames")
            yield match[0]
    if not count:
        raise TargetError("empty target specification")


def _parse_token(token: str) -> Range | None:
    """The range a literal token writes; None for a hostname (to be resolved)."""
    if ":" in token:
        _reject_ipv6(token)
    if "/" in token:
        return _parse_cidr(token)
    if _RANGE.fullmatch(token):
        return _parse_range(token)
    if _NUMERIC.fullmatch(token):
        addr = _address(token, token)
        return addr, addr
    if not _HOSTNAME.fullmatch(token):
        raise TargetError(f"malformed target {_shown(token)}")
    return None


def _reject_ipv6(token: str) -> None:
    head = re.split(r"[/-]", token, maxsplit=1)[0]
    try:
        ipaddress.IPv6Address(head)
    except ValueError:
        raise TargetError(f"malformed target {_shown(token)}") from None
    raise TargetError(f"IPv6 targets are not supported yet: {_shown(token)}")


def _parse_cidr(token: str) -> Range:
    addr_text, _, prefix_text = token.partition("/")
    addr = _address(addr_text, token)
    if not _PREFIX.fullmatch(prefix_text) or int(prefix_text) > 32:
        raise TargetError(f"bad prefix length in {_shown(token)} (expected 0-32)")
    # Host bits are allowed, as in nmap: 198.18.0.5/24 means the whole /24.
    host_bits = 32 - int(prefix_text)
    lo = addr >> host_bits << host_bits
    return lo, lo + (1 << host_bits) - 1


def _parse_range(token: str) -> Range:
    first, _, last = token.partition("-")
    lo = _address(first, token)
    if "." in last:
        hi = _address(last, token)
    elif len(last) <= 3 and int(last) <= 255:
        # nmap's short form: 198.18.0.1-20 replaces only the last octet.
        hi = lo & ~0xFF | int(last)
    else:
        raise TargetError(f"malformed range end in {_shown(token)}")
    if lo > hi:
        raise TargetError(f"reversed range {_shown(token)}")
    return lo, hi


def _address(text: str, token: str) -> int:
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        where = "" if text == token else f" in {_shown(token)}"
        raise TargetError(f"malformed IPv4 address {_shown(text)}{where}") from None


def _lookup(host: str, resolve: Resolver) -> list[Range]:
    try:
        addresses = resolve(host)
    except (OSError, UnicodeError):
        addresses = []
    if not addresses:
        raise TargetError(f"hostname {_shown(host)} does not resolve to an IPv4 address")
    return [(addr, addr) for addr in (_address(text, host) for text in addresses)]


def _shown(token: str) -> str:
    """A token as an error quotes it: a megabyte-long one is cut short."""
    return repr(token if len(token) <= _SHOWN else token[:_SHOWN] + "...")


def _getaddrinfo(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
