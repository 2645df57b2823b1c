"""DNS over UDP: the CHAOS TXT query for version.bind ("dnsmasq-2.90" -> dnsmasq 2.90).

The message is the TCP probe's (services/probes/dns.py) without its length prefix and with the
exchange's id; its parser reads the answer once the id is checked here.
"""

from __future__ import annotations

from netscand.profiling.services.base import ServiceInfo
from netscand.profiling.services.probes import dns as tcp_dns

name = "dns"
ports = frozenset({53})
any_source_port = False

_TCP_ID = tcp_dns.payload[2:4] if tcp_dns.payload else b""


def requests(ip: str, ident: int) -> tuple[bytes, ...]:
    message = tcp_dns.payload[4:] if tcp_dns.payload else b""
    return (ident.to_bytes(2, "big") + message,)


def parse(data: bytes, ident: int) -> ServiceInfo | None:
    if len(data) < 12 or data[:2] != ident.to_bytes(2, "big"):
        return None
    message = data[:0xFFFF]
    return tcp_dns.parse(len(message).to_bytes(2, "big") + _TCP_ID + message[2:])
