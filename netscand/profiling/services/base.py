"""What every service probe module implements, what it reports, and the helpers they share.

A probe is data plus one pure function, in the spirit of zmap's probe modules: the bytes it sends
(or None: it only listens), the ports it usually lives on, and `parse`, which turns whatever came
back into a ServiceInfo or None. `parse` sees bytes from strangers, so it must never raise: each
module's parse is wrapped by `safe_parse`, and a module that would raise counts as "not this
service" rather than taking the scan down.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

BANNER_MAX = 256
# Versions and products taken from banners go into CPE names and the database: keep them short
# and made of the characters real version strings use.
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}")
_CPE_PLAIN = re.compile(r"[a-z0-9._-]")


@dataclass(frozen=True)
class ServiceInfo:
    service: str  # lowercase IANA-style name: "ssh", "http", "https", "imaps", "unknown", ...
    product: str | None = None  # "OpenSSH", "nginx", "MariaDB", ...
    version: str | None = None
    cpe: str | None = None  # CPE 2.3 formatted string; version "*" when only the product is known
    banner: str | None = None  # printable first line(s), at most BANNER_MAX characters
    extra: dict[str, Any] = field(default_factory=dict, hash=False)


class Probe(Protocol):
    name: str
    ports: frozenset[int]  # where the service usually lives: tried first there
    tls: bool  # usually spoken inside TLS (https, imaps, ...): its ports get a TLS attempt early
    payload: bytes | None  # what to send; None: a banner service, recognised from the null read

    def parse(self, data: bytes) -> ServiceInfo | None: ...


def safe_parse(parse: Callable[[bytes], ServiceInfo | None], data: bytes) -> ServiceInfo | None:
    """parse(data), with any exception meaning "not recognised": hostile input never escapes."""
    try:
        return parse(data)
    except Exception:  # noqa: BLE001 - a parser bug on a stranger's bytes is "unknown", not a crash
        return None


def token(text: str | None) -> str | None:
    """The leading version/product-like token of text, or None: what may enter a CPE name."""
    if not text:
        return None
    match = _TOKEN.match(text)
    return match.group(0) if match else None


def cpe(vendor: str, product: str, version: str | None, update: str | None = None) -> str:
    """A CPE 2.3 application name; an unknown version is "*" (any), for the matcher to treat as such."""
    ver = _cpe_value(version) if version else "*"
    upd = _cpe_value(update) if update else "*"
    return f"cpe:2.3:a:{vendor}:{product}:{ver}:{upd}:*:*:*:*:*:*"


def _cpe_value(value: str) -> str:
    # CPE 2.3 formatted strings escape every character other than [a-z0-9._-] with a backslash.
    return "".join(c if _CPE_PLAIN.fullmatch(c) else "\\" + c for c in value.lower())


def printable(data: bytes, limit: int = BANNER_MAX) -> str | None:
    """The first line(s) of data as printable text (other bytes become "."), or None if empty."""
    text = data[: limit * 4].decode("utf-8", "replace")
    text = "".join(c if c.isprintable() or c in "\r\n\t" else "." for c in text)
    text = "\n".join(line.strip() for line in text.splitlines() if line.strip())
    return text[:limit] or None


def lines(data: bytes, limit: int = 64 * 1024) -> list[str]:
    """data as text lines (latin-1, so any byte decodes), from at most `limit` bytes."""
    return data[:limit].decode("latin-1").splitlines()


# Distribution or OS names that banners carry in comments ("Debian-2+deb12u3", "(Ubuntu)").
_OS_HINTS = (("Debian", "Debian"), ("Ubuntu", "Ubuntu"), ("Raspbian", "Raspbian"), ("FreeBSD", "FreeBSD"),
             ("CentOS", "CentOS"), ("Red Hat", "Red Hat"), ("Win64", "Windows"), ("Win32", "Windows"))


def os_hint(text: str | None) -> dict[str, object]:
    """{"os_hint": name} for the first OS a banner names, else {}: a start for ServiceInfo.extra."""
    for word, os_name in _OS_HINTS:
        if text and re.search(rf"\b{word}\b", text, re.IGNORECASE):
            return {"os_hint": os_name}
    return {}
