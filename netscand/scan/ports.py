"""Port specifications, the TCP and UDP top-ports rankings and well-known port names.

A specification is kept as merged ranges: checking "1-65535" a thousand times costs what
checking it once does, and only `parse_ports` expands the (at most 65535) ports the engine needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from importlib.resources import files
from itertools import islice
from typing import TypeVar

from netscand.engine.probes.payloads import PAYLOAD_PORTS
from netscand.engine.ranges import merge

T = TypeVar("T")
R = TypeVar("R")
MIN_PORT = 1
MAX_PORT = 65535
TOP_PORTS_MAX = 1000  # of either protocol's ranking
DEEP_UDP_TOP = 100
# Entries (ports or ranges) in one specification. Listing the top-1000 ports one by one still
# fits; a longer list is a request to burn the control process's time, answered with an error
# before any entry past the cap is looked at.
MAX_PORT_ENTRIES = 1024
# A paced scan's source ports (`source_ports`): unprivileged, and below the blocks unpaced plans
# send from (scan/work.py SPORT_BASE), so the two kinds of plan never share a reply's port.
SOURCE_PORTS = (1024, 61439)
# Linux's default ip_local_port_range, for a kernel whose range cannot be read or clipped.
LINUX_EPHEMERAL = (32768, 60999)

# ASCII digits only: int() would also take "+22", "2_2" or non-ASCII digits. Leading zeros are
# allowed; at most five digits after them, so int() never meets its 4300-digit limit.
_NUMBER = re.compile(r"0*([0-9]{1,5})")
_SHOWN = 40  # characters of a bad entry quoted back in an error

PortRange = tuple[int, int]


class PortSpecError(ValueError):
    """A port specification that cannot be used; the message names the bad part."""


def port_ranges(spec: str | Iterable[int | str]) -> tuple[PortRange, ...]:
    """Sorted, merged, inclusive (first, last) ranges from "22,80,1000-2000", "-" (all) or
    [22, 80, "1000-2000"]: O(entries log entries), whatever the ranges cover."""
    items = _entries(spec)
    if not items:
        raise PortSpecError("empty port specification")
    return merge(_parse_item(item) for item in items)


def parse_ports(spec: str | Iterable[int | str]) -> tuple[int, ...]:
    """Sorted unique ports of a specification (see `port_ranges`)."""
    return tuple(port for lo, hi in port_ranges(spec) for port in range(lo, hi + 1))


def _entries(spec: str | Iterable[int | str]) -> Sequence[int | str]:
    too_many = PortSpecError(f"too many entries in port specification: at most {MAX_PORT_ENTRIES} "
                             "ports or 'a-b' ranges")
    if isinstance(spec, str):
        # Counted before splitting, so a megabyte of commas never becomes a list of strings.
        if spec.count(",") >= MAX_PORT_ENTRIES:
            raise too_many
        return spec.split(",") if spec.strip() else []
    items = list(islice(spec, MAX_PORT_ENTRIES + 1))
    if len(items) > MAX_PORT_ENTRIES:
        raise too_many
    return items


def _parse_item(item: int | str) -> PortRange:
    # bool is an int subclass, so True would otherwise silently mean port 1.
    if isinstance(item, bool) or not isinstance(item, int | str):
        raise PortSpecError(f"port must be an integer or an 'a-b' string, not {_shown(item)}")
    if isinstance(item, int):
        return _check(item, item), item
    text = item.strip()
    if not text:
        raise PortSpecError("empty entry in port specification")
    if text == "-":
        return MIN_PORT, MAX_PORT
    first, dash, last = (part.strip() for part in text.partition("-"))
    if not dash:
        port = _number(first, text)
        return port, port
    lo, hi = _number(first, text), _number(last, text)
    if lo > hi:
        raise PortSpecError(f"reversed port range {_shown(text)}")
    return lo, hi


def _number(text: str, item: str) -> int:
    match = _NUMBER.fullmatch(text)
    if not match:
        raise PortSpecError(f"not a port number or 'a-b' range: {_shown(item)}")
    return _check(int(match[1]), item)


def _check(port: int, item: int | str) -> int:
    if not MIN_PORT <= port <= MAX_PORT:
        raise PortSpecError(f"port out of range {MIN_PORT}-{MAX_PORT}: {_shown(item)}")
    return port


def _shown(value: object) -> str:
    """A bad entry as an error quotes it: short, and never a huge int's repr (which raises)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**_SHOWN:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, str):
        return repr(value if len(value) <= _SHOWN else value[:_SHOWN] + "...")
    if isinstance(value, int | float) or value is None:
        return repr(value)
    return f"a {type(value).__name__}"


def source_port_range(text: str) -> PortRange:
    """A paced scan's source ports "lo-hi", two ports at least (the kernel-shaped SYN takes even
    ones, as connect() does) within SOURCE_PORTS."""
    first, dash, last = text.partition("-")
    low, high = SOURCE_PORTS
    numbers = dash and _NUMBER.fullmatch(first) and _NUMBER.fullmatch(last)
    if not numbers or not low <= int(first) < int(last) <= high:
        raise PortSpecError(f"not a range 'lo-hi' of two ports or more within {low}-{high}: {_shown(text)}")
    return int(first), int(last)


def named(flag: str, read: Callable[[T], R], text: T) -> R:
    """read(text), its PortSpecError naming the field or option it came from (the API's
    fields and the one-shot CLI's options read port text alike)."""
    try:
        return read(text)
    except PortSpecError as exc:
        raise PortSpecError(f"{flag}: {exc}") from None


def by_frequency(ports: Iterable[int], protocol: str) -> tuple[int, ...]:
    """`ports` most frequently open first (the ranked ones in rank order, the others after, in
    port order): a paced scan gives up a host that answers none of its first ports (spec.py
    PACED_SILENT_PORTS), so those must be the ones most likely to answer."""
    rank = _rank(protocol)
    return tuple(sorted(ports, key=lambda p: (rank.get(p, len(rank)), p)))


@cache
def _rank(protocol: str) -> dict[int, int]:
    ranking = _udp_ranking() if protocol == "udp" else _ranking()
    return {port: i for i, port in enumerate(ranking)}


def kernel_source_ports(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> PortRange:
    """The kernel's ephemeral port range (where its own connect()s send from) clipped to
    SOURCE_PORTS: the default of a paced scan, whose SYNs should come from where the host's do.
    Linux's default range when it cannot be read or leaves too little."""
    try:
        with open(path, encoding="ascii") as f:
            lo, hi = (int(n) for n in f.read(64).split())
    except (OSError, ValueError):
        return LINUX_EPHEMERAL
    lo, hi = max(lo, SOURCE_PORTS[0]), min(hi, SOURCE_PORTS[1])
    return (lo, hi) if lo < hi else LINUX_EPHEMERAL


def top_ports(n: int) -> tuple[int, ...]:
    """The n most frequently open TCP ports, most frequent first."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= TOP_PORTS_MAX:
        raise PortSpecError(f"top ports count must be 1-{TOP_PORTS_MAX}, not {n!r}")
    return _ranking()[:n]


def top_udp_ports(n: int) -> tuple[int, ...]:
    """The n most frequently open UDP ports, most frequent first."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= TOP_PORTS_MAX:
        raise PortSpecError(f"top UDP ports count must be 1-{TOP_PORTS_MAX}, not {n!r}")
    return _udp_ranking()[:n]


@cache
def deep_udp_ports() -> tuple[int, ...]:
    """The deep profile's UDP ports: the top 100, then every port the engine has a protocol
    payload for that is not among them (memcached, CoAP and OpenVPN rank far below 100 in
    nmap's data, but are real services), in rank order, then port order."""
    top = top_udp_ports(DEEP_UDP_TOP)
    rank = {port: i for i, port in enumerate(_udp_ranking())}
    rest = sorted(set(PAYLOAD_PORTS) - set(top), key=lambda p: (rank.get(p, len(rank)), p))
    return top + tuple(rest)


def service_name(port: int) -> str | None:
    """The well-known (IANA) name of a TCP port in the top-ports list, if it has one."""
    return _names().get(port)


@cache
def _ranking() -> tuple[int, ...]:
    return tuple(int(line) for line in _data_lines("top-ports.txt"))


@cache
def _udp_ranking() -> tuple[int, ...]:
    return tuple(int(line) for line in _data_lines("top-udp-ports.txt"))


@cache
def _names() -> dict[int, str]:
    return {int(port): name for port, name in (line.split() for line in _data_lines("port-names.txt"))}


def _data_lines(name: str) -> list[str]:
    text = files("netscand").joinpath("data").joinpath(name).read_text(encoding="ascii")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
