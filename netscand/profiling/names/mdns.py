"""mDNS: a unicast PTR query for the address's reverse name, sent to the host itself.

RFC 6762 section 6.7, "legacy unicast": a query to port 5353 from any other source port is
answered by unicast to that port, with the query's id and question echoed. Avahi and Apple's
mDNSResponder both publish the reverse name of each of their addresses, pointing at their host
name ("printer.local.").
"""

from __future__ import annotations

import ipaddress

import dpkt

from netscand.profiling import dnswire
from netscand.profiling.names.base import Reply, clean_name, never_raises
from netscand.profiling.services.base import ServiceInfo

source = "mdns"
port = 5353


def request(ip: str, ident: int) -> bytes:
    question = dpkt.dns.DNS.Q(name=ipaddress.IPv4Address(ip).reverse_pointer,
                              type=dpkt.dns.DNS_PTR, cls=dpkt.dns.DNS_IN)
    # op 0: no recursion desired, which means nothing to an mDNS responder
    return bytes(dpkt.dns.DNS(id=ident, op=0, qd=[question]))


@never_raises
def parse(data: bytes, ident: int) -> Reply | None:
    # Only the answer section matters; the others may hold record types such as NSEC, which
    # mDNSResponder adds, and are not read.
    head = dnswire.header(data)
    records = dnswire.answers(data)
    if head is None or not head.answers_query(ident) or records is None:
        return None
    pointer = next((r for r in records if r.rtype == dpkt.dns.DNS_PTR), None)
    if pointer is None:
        return Reply(None, ServiceInfo("mdns"))
    labels = dnswire.read_name(data, pointer.start)
    if labels is None:
        return None  # a PTR whose name is malformed: the answer as a whole is not to be trusted
    return Reply(clean_name(b".".join(labels).decode("utf-8", "replace")), ServiceInfo("mdns"))
