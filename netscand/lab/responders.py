"""The lab's name responders: mDNS and NetBIOS answers for the hosts whose truth gives them names.

For a host with "mdns" (its name, "s1.local") it answers on UDP 5353 the unicast queries of
RFC 6762 section 6.7 ("legacy unicast", from a port other than 5353): PTR for the reverse name
of its address, A for its name. For a host with "netbios" ({"name": "FILES", "workgroup": "LAB"})
it answers NetBIOS Node Status requests on UDP 137 (RFC 1002 sections 4.2.17-18) with NAME<00>,
NAME<20>, WORKGROUP<00> (a group) and the host's "mac". Anything else gets no answer.
Like services.py, it creates each socket in its host's namespace and serves them all from one loop.
Usage: python -m netscand.lab.responders STATEFILE
"""

from __future__ import annotations

import ipaddress
import selectors
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

import dpkt
from dpkt.netbios import NS, NS_IN, NS_NAME_ACT, NS_NAME_G, NS_NBSTAT, decode_name

from netscand.lab import namespaces, procs

MDNS_PORT = 5353
NETBIOS_PORT = 137
TTL = 10  # RFC 6762 section 6.7: at most 10 seconds in answers to legacy unicast queries
_ANSWER_FLAGS = 0x8400  # a response (QR), authoritative (AA), opcode and rcode 0
_NBSTAT_STATISTICS = 46  # RFC 1002 section 4.2.18: the statistics, from UNIT_ID (the MAC) on
# Answers one query: the reply, or None for a query we have nothing to say to.
Answerer = Callable[[bytes], bytes | None]


def mdns_answerer(host: dict[str, Any]) -> Answerer:
    name = host["mdns"].rstrip(".").lower()
    reverse = ipaddress.IPv4Address(host["ip"]).reverse_pointer
    records = {
        (reverse, dpkt.dns.DNS_PTR): {"ptrname": name},
        (name, dpkt.dns.DNS_A): {"ip": socket.inet_aton(host["ip"])},
    }

    def answer(data: bytes) -> bytes | None:
        query = dpkt.dns.DNS(data)
        if query.qr or query.opcode != dpkt.dns.DNS_QUERY:
            return None
        answers = []
        for question in query.qd:
            fields = records.get((question.name.rstrip(".").lower(), question.type))
            if fields and question.cls & 0x7FFF == dpkt.dns.DNS_IN:  # the top bit asks for unicast
                answers.append(dpkt.dns.DNS.RR(name=question.name, type=question.type, cls=dpkt.dns.DNS_IN,
                                               ttl=TTL, **fields))
        if not answers:
            return None
        # Legacy unicast: the query's id and questions echoed (RFC 6762 section 6.7).
        return bytes(dpkt.dns.DNS(id=query.id, op=_ANSWER_FLAGS, qd=query.qd, an=answers))

    return answer


def netbios_answerer(host: dict[str, Any]) -> Answerer:
    name, workgroup = host["netbios"]["name"].upper(), host["netbios"]["workgroup"].upper()
    table = [(name, 0x00, NS_NAME_ACT), (name, 0x20, NS_NAME_ACT), (workgroup, 0x00, NS_NAME_G | NS_NAME_ACT)]
    rdata = bytes((len(table),)) + b"".join(
        struct.pack("!15sBH", entry.encode("ascii").ljust(15), suffix, flags) for entry, suffix, flags in table)
    mac = bytes.fromhex(host["mac"].replace(":", ""))
    rdata += mac + bytes(_NBSTAT_STATISTICS - len(mac))

    def answer(data: bytes) -> bytes | None:
        query = NS(data)
        if query.qr or query.opcode != 0 or len(query.qd) != 1:
            return None
        question = query.qd[0]
        asked = decode_name(question.name.split(".")[0]).rstrip()  # before any scope
        if question.type != NS_NBSTAT or asked not in ("*", name):
            return None
        record = NS.RR(name=question.name, type=NS_NBSTAT, cls=NS_IN, ttl=0, rdata=rdata)
        return bytes(NS(id=query.id, op=_ANSWER_FLAGS, an=[record]))

    return answer


def open_all(state: dict[str, Any]) -> list[tuple[socket.socket, int, Answerer]]:
    sockets = []
    for host in state["hosts"]:
        wanted = []
        if host.get("mdns"):
            wanted.append((MDNS_PORT, mdns_answerer(host)))
        if host.get("netbios"):
            wanted.append((NETBIOS_PORT, netbios_answerer(host)))
        if not wanted:
            continue
        with namespaces.inside(host["netns"]):
            for port, answerer in wanted:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((host["ip"], port))
                sock.setblocking(False)
                sockets.append((sock, port, answerer))
    return sockets


def serve(sockets: list[tuple[socket.socket, int, Answerer]]) -> None:
    selector = selectors.DefaultSelector()
    for sock, port, answerer in sockets:
        selector.register(sock, selectors.EVENT_READ, (sock, port, answerer))
    while True:
        for key, _ in selector.select():
            sock, port, answerer = key.data
            while True:
                try:
                    data, peer = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                except OSError:
                    continue  # an ICMP error for an earlier reply: nothing to do about it
                if port == MDNS_PORT == peer[1]:
                    continue  # a full mDNS querier expects multicast answers, which the lab has not
                reply = _answer(answerer, data)
                if reply is not None:
                    try:
                        sock.sendto(reply, peer)
                    except OSError:
                        pass  # the asker is gone: as on a real network, the answer is lost


def _answer(answerer: Answerer, data: bytes) -> bytes | None:
    try:
        return answerer(data)
    except Exception:  # noqa: BLE001 - garbage from a scanner is no reason to stop answering
        return None


if __name__ == "__main__":
    raise SystemExit(procs.serve_lab(sys.argv[1:], open_all, serve))
