"""DNS over UDP: the CHAOS TXT query for version.bind ("dnsmasq-2.90" -> dnsmasq 2.90).

The message and its reading are the TCP probe's (services/probes/dns.py), with the exchange's
id and without TCP's length prefix.
"""

from __future__ import annotations

from netscand.profiling.services.base import ServiceInfo
from netscand.profiling.services.probes import dns as tcp_dns

name = "dns"
ports = frozenset({53})
any_source_port = False


def requests(ip: str, ident: int) -> tuple[bytes, ...]:
    return (tcp_dns.query(ident),)


def parse(data: bytes, ident: int) -> ServiceInfo | None:
    return tcp_dns.parse_message(data, ident)
