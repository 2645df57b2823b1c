"""What every UDP service probe module implements, in the shape of the name queries (names/base.py).

A module is data plus two pure functions: the ports the service usually lives on, `requests(ip,
ident)`, the datagrams to send (all at once: NTP asks two ways), and `parse(data, ident)`, which
turns one reply into a ServiceInfo or None. `ident` is the exchange's random id, echoed by the
protocols that have one (DNS, NTP, memcached, RPC, SIP's branch); a reply that does not carry it
is not ours. `parse` sees bytes from strangers, so it must never raise: the asker calls it
through `safe_parse`. A reply that names the product ends the exchange; one that only proves the
service is kept while the rest of the wait may still bring a better one.
"""

from __future__ import annotations

from typing import Protocol

from netscand.profiling.services.base import ServiceInfo


class UdpProbe(Protocol):
    name: str
    ports: frozenset[int]
    # The service answers from another port than the one asked (TFTP: RFC 1350 section 4), so
    # the exchange listens on an unconnected socket and takes what comes from the host's address.
    any_source_port: bool

    def requests(self, ip: str, ident: int) -> tuple[bytes, ...]: ...

    def parse(self, data: bytes, ident: int) -> ServiceInfo | None: ...


def safe_parse(probe: UdpProbe, data: bytes, ident: int) -> ServiceInfo | None:
    """probe.parse, with any exception meaning "not recognised": hostile input never escapes."""
    try:
        return probe.parse(data, ident)
    except Exception:  # noqa: BLE001 - a parser bug on a stranger's bytes is "unknown", not a crash
        return None
