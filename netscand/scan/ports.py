"""TCP port specifications, the top-ports ranking and well-known port names."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from importlib.resources import files

MIN_PORT = 1
MAX_PORT = 65535
TOP_PORTS_MAX = 1000

# ASCII digits only: int() would also take "+22", "2_2" or non-ASCII digits.
_NUMBER = re.compile(r"[0-9]+")


class PortSpecError(ValueError):
    """A port specification that cannot be used; the message names the bad part."""


def parse_ports(spec: str | Iterable[int | str]) -> tuple[int, ...]:
    """Sorted unique ports from "22,80,1000-2000", "-" (all) or [22, 80, "1000-2000"]."""
    if isinstance(spec, str):
        items: list[int | str] = spec.split(",") if spec.strip() else []
    else:
        items = list(spec)
    if not items:
        raise PortSpecError("empty port specification")
    ports: set[int] = set()
    for item in items:
        lo, hi = _parse_item(item)
        ports.update(range(lo, hi + 1))
    return tuple(sorted(ports))


def _parse_item(item: int | str) -> tuple[int, int]:
    # bool is an int subclass, so True would otherwise silently mean port 1.
    if isinstance(item, bool) or not isinstance(item, int | str):
        raise PortSpecError(f"port must be an integer or an 'a-b' string, not {item!r}")
    if isinstance(item, int):
        return _check(item, repr(item)), item
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
        raise PortSpecError(f"reversed port range {text!r}")
    return lo, hi


def _number(text: str, item: str) -> int:
    if not _NUMBER.fullmatch(text):
        raise PortSpecError(f"not a port number or 'a-b' range: {item!r}")
    return _check(int(text), repr(item))


def _check(port: int, shown: str) -> int:
    if not MIN_PORT <= port <= MAX_PORT:
        raise PortSpecError(f"port out of range {MIN_PORT}-{MAX_PORT}: {shown}")
    return port


def top_ports(n: int) -> tuple[int, ...]:
    """The n most frequently open TCP ports, most frequent first."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= TOP_PORTS_MAX:
        raise PortSpecError(f"top ports count must be 1-{TOP_PORTS_MAX}, not {n!r}")
    return _ranking()[:n]


def service_name(port: int) -> str | None:
    """The well-known (IANA) name of a TCP port in the top-ports list, if it has one."""
    return _names().get(port)


@cache
def _ranking() -> tuple[int, ...]:
    return tuple(int(line) for line in _data_lines("top-ports.txt"))


@cache
def _names() -> dict[int, str]:
    return {int(port): name for port, name in (line.split() for line in _data_lines("port-names.txt"))}


def _data_lines(name: str) -> list[str]:
    text = files("netscand").joinpath("data").joinpath(name).read_text(encoding="ascii")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
