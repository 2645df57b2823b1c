"""mDNS: a unicast PTR query for the address's reverse name, sent to the host itself.

RFC 6762 section 6.7, "legacy unicast": a query to port 5353 from any other source port is
answered by unicast to that port, with the query's id and question echoed. Avahi and Apple's
mDNSResponder both publish the reverse name of each of their addresses, pointing at their host
name ("printer.local.").
"""

from __future__ import annotations

import ipaddress

import dpkt

from netscand.profiling.names.base import Reply, clean_name, never_raises
from netscand.profiling.services.base import ServiceInfo

source = "mdns"
port = 5353

_OPCODE_RCODE = 0x780F  # the flag bits that must be 0 in a useful answer: opcode (query) and rcode


def request(ip: str, ident: int) -> bytes:
    question = dpkt.dns.DNS.Q(name=ipaddress.IPv4Address(ip).reverse_pointer,
                              type=dpkt.dns.DNS_PTR, cls=dpkt.dns.DNS_IN)
    # op 0: no recursion desired, which means nothing to an mDNS responder
    return bytes(dpkt.dns.DNS(id=ident, op=0, qd=[question]))


@never_raises
def parse(data: bytes, ident: int) -> Reply | None:
    if len(data) < 12:
        return None
    # Only the answer section matters; the others may hold record types dpkt refuses (NSEC, which
    # mDNSResponder adds), so they are cut off before it parses: zero counts, bytes left unread.
    message = dpkt.dns.DNS(data[:8] + b"\0\0\0\0" + data[12:])
    if message.id != ident or not message.qr or message.op & _OPCODE_RCODE:
        return None
    names = [rr.ptrname for rr in message.an if rr.type == dpkt.dns.DNS_PTR]
    name = clean_name(names[0]) if names else None
    return Reply(name, ServiceInfo("mdns"))
