"""The lab's mDNS and NetBIOS responders, in-process: what they answer, and what they ignore."""

from __future__ import annotations

import random
import socket
import struct
from typing import Any

import dpkt
from dpkt.netbios import NS, NS_NBSTAT, encode_name

from netscand.lab import responders
from netscand.profiling.names import mdns, netbios

HOST: dict[str, Any] = {"name": "h1", "netns": "never-entered", "ip": "198.18.0.10", "mac": "02:6e:73:12:34:56",
                        "mdns": "s2.local", "netbios": {"name": "Files", "workgroup": "lab"}}


def dns_query(name: str, qtype: int, ident: int = 7, cls: int = dpkt.dns.DNS_IN) -> bytes:
    return bytes(dpkt.dns.DNS(id=ident, op=0, qd=[dpkt.dns.DNS.Q(name=name, type=qtype, cls=cls)]))


def test_mdns_legacy_unicast_answer() -> None:
    answer = dpkt.dns.DNS(responders.mdns_answerer(HOST)(mdns.request(HOST["ip"], 0xBEEF)))
    assert answer.id == 0xBEEF and answer.qr and answer.aa and answer.rcode == 0
    assert [(q.name, q.type) for q in answer.qd] == [("10.0.18.198.in-addr.arpa", dpkt.dns.DNS_PTR)]  # echoed
    [record] = answer.an
    assert (record.type, record.cls, record.ptrname) == (dpkt.dns.DNS_PTR, dpkt.dns.DNS_IN, "s2.local")
    assert record.ttl <= 10  # RFC 6762 section 6.7


def test_mdns_a_query_and_name_case() -> None:
    answerer = responders.mdns_answerer(HOST)
    answer = dpkt.dns.DNS(answerer(dns_query("S2.LOCAL", dpkt.dns.DNS_A, cls=0x8001)))  # QU bit set
    assert [(r.type, r.ip) for r in answer.an] == [(dpkt.dns.DNS_A, socket.inet_aton(HOST["ip"]))]


def test_mdns_silence_for_other_questions() -> None:
    answerer = responders.mdns_answerer(HOST)
    assert answerer(dns_query("11.0.18.198.in-addr.arpa", dpkt.dns.DNS_PTR)) is None  # another address
    assert answerer(dns_query("s2.local", dpkt.dns.DNS_AAAA)) is None
    assert answerer(dns_query("other.local", dpkt.dns.DNS_A)) is None
    response = bytearray(mdns.request(HOST["ip"], 1))
    response[2] |= 0x80  # QR: an answer, not a query
    assert answerer(bytes(response)) is None


def test_netbios_node_status_answer() -> None:
    answer = NS(responders.netbios_answerer(HOST)(netbios.request(HOST["ip"], 0x4242)))
    assert answer.id == 0x4242 and answer.op == 0x8400 and not answer.qd
    [record] = answer.an
    assert record.type == NS_NBSTAT and record.name == encode_name("*")
    assert record.nodenames == [(b"FILES          ", 0x00, 0x0400), (b"FILES          ", 0x20, 0x0400),
                                (b"LAB            ", 0x00, 0x8400)]
    assert record.rdata[1 + 3 * 18:][:6] == bytes.fromhex("026e73123456")
    assert len(record.rdata) == 1 + 3 * 18 + 46  # RFC 1002 section 4.2.18's statistics


def nb_query(name: str, qtype: int = NS_NBSTAT) -> bytes:
    return bytes(NS(id=9, op=0, qd=[NS.Q(name=encode_name(name), type=qtype, cls=1)]))


def test_netbios_answers_its_own_name_only() -> None:
    answerer = responders.netbios_answerer(HOST)
    assert answerer(nb_query("FILES")) is not None
    assert answerer(nb_query("OTHER")) is None
    assert answerer(nb_query("*", qtype=0x20)) is None  # a name query, not node status


def test_garbage_is_ignored() -> None:
    rng = random.Random("responders")
    samples = [mdns.request(HOST["ip"], 1), netbios.request(HOST["ip"], 1)]
    for answerer in (responders.mdns_answerer(HOST), responders.netbios_answerer(HOST)):
        for _ in range(2000):
            data = rng.randbytes(rng.randrange(0, 300))
            if rng.random() < 0.5:
                mutated = bytearray(rng.choice(samples))
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
                data = bytes(mutated)
            reply = responders._answer(answerer, data)
            assert reply is None or isinstance(reply, bytes)
        assert responders._answer(answerer, struct.pack("!6H", 1, 0, 0xFFFF, 0, 0, 0)) is None


def test_hosts_without_names_get_no_socket() -> None:
    # No "mdns" nor "netbios": nothing opened, and its namespace (which does not exist) never entered.
    assert responders.open_all({"hosts": [{k: v for k, v in HOST.items() if k not in ("mdns", "netbios")}]}) == []
