"""What every name query module implements, what it reports, and the name hygiene they share.

A module is data plus two pure functions, like the service probes (services/base.py): the UDP
port it asks, `request(ip, ident)`, the datagram to send, and `parse(data, ident)`, which turns a
reply into a Reply or None. `ident` is the query's random transaction id, echoed by the answer:
a reply that does not carry it is not ours. `parse` sees bytes from strangers, so it must never
raise: each module's parse is wrapped by `never_raises`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Protocol

from netscand.profiling.services.base import ServiceInfo

NAME_MAX = 255  # RFC 1035's limit on a whole domain name
# What a host name may be made of (RFC 952/1123 letters, digits, hyphens, and dots between labels,
# plus the underscore that real devices use anyway). Anything else is replaced, never passed on:
# names reach terminals, logs and the API.
_INSANE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Reply:
    name: str | None  # the host's name by this protocol, cleaned; None when the answer had none
    service: ServiceInfo  # who answered on the port: one of the host's UDP services
    evidence: str | None = None  # text that may name the OS (SNMP's sysDescr), for the OS guesser


class NameQuery(Protocol):
    source: str  # "mdns", "netbios", "snmp": the key of this module's name in HostNames.names
    port: int

    def request(self, ip: str, ident: int) -> bytes: ...

    def parse(self, data: bytes, ident: int) -> Reply | None: ...


def clean_name(text: str, *, lower: bool = True) -> str | None:
    """text as a sane host name (runs of other characters become "-"), or None if nothing is left.

    DNS-style names are lower-cased, since DNS compares names without case; NetBIOS names keep
    theirs (lower=False), upper case by convention.
    """
    name = _INSANE.sub("-", text).strip("-.")
    name = name[:NAME_MAX].rstrip("-.")
    return (name.lower() if lower else name) or None


Parse = Callable[[bytes, int], Reply | None]


def never_raises(parse: Parse) -> Parse:
    """parse, with any exception meaning "no answer", as services.base.safe_parse does for probes."""

    @wraps(parse)
    def safe(data: bytes, ident: int) -> Reply | None:
        try:
            return parse(data, ident)
        except Exception:  # noqa: BLE001 - a parser bug on a stranger's bytes is "no answer", not a crash
            return None

    return safe
