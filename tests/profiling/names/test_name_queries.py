"""Each name query module against real and crafted answers, and against truncated, random and
hostile bytes, which must give None or a sane Reply and never raise."""

from __future__ import annotations

import random
import struct
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import dpkt
import pytest

from netscand.lab import responders
from netscand.profiling.names import QUERIES, mdns, netbios, snmp
from netscand.profiling.names.base import NAME_MAX, Reply, clean_name
from netscand.profiling.services.base import BANNER_MAX, ServiceInfo
from netscand.wire.ber import tlv

RECORDED = Path(__file__).parent / "recorded"
SNMP_IDENT = 0x4E53  # the request-id capture.py sent
IDENT = 0x1234
HOST: dict[str, Any] = {"name": "h1", "ip": "198.18.0.10", "mac": "02:6e:73:12:34:56", "mdns": "S2.local",
                        "netbios": {"name": "FILES", "workgroup": "LAB"}}
LINUX_DESCR = "Linux vm 6.18.44-fc-v857 #1 SMP PREEMPT_DYNAMIC @0 x86_64"


def snmp_recorded() -> bytes:
    return (RECORDED / "snmp-netsnmp.bin").read_bytes()


def mdns_answer(ident: int = IDENT) -> bytes:
    answer = responders.mdns_answerer(HOST)(mdns.request(HOST["ip"], ident))
    assert answer is not None
    return answer


def netbios_answer(ident: int = IDENT) -> bytes:
    answer = responders.netbios_answerer(HOST)(netbios.request(HOST["ip"], ident))
    assert answer is not None
    return answer


# (module, answer, the ident it answers)
SAMPLES: list[tuple[ModuleType, bytes, int]] = [
    (mdns, mdns_answer(), IDENT), (netbios, netbios_answer(), IDENT), (snmp, snmp_recorded(), SNMP_IDENT)]


def check(result: object) -> None:
    """What any parse may return: None, or a Reply whose fields are bounded, clean text."""
    if result is None:
        return
    assert isinstance(result, Reply)
    name = result.name
    assert name is None or (0 < len(name) <= NAME_MAX and clean_name(name, lower=False) == name)
    assert isinstance(result.service, ServiceInfo) and result.service.service in ("mdns", "netbios-ns", "snmp")
    assert result.service.banner is None or len(result.service.banner) <= BANNER_MAX
    assert result.evidence is None or len(result.evidence) <= BANNER_MAX


# --- real and expected answers ---

def test_net_snmp_recorded() -> None:
    reply = snmp.parse(snmp_recorded(), SNMP_IDENT)
    assert reply is not None
    assert reply.name == "printer-snmp.lab"
    assert reply.evidence == LINUX_DESCR
    assert reply.service == ServiceInfo(
        "snmp", "Net-SNMP", None, "cpe:2.3:a:net-snmp:net-snmp:*:*:*:*:*:*:*:*", LINUX_DESCR,
        {"sys_descr": LINUX_DESCR, "sys_object_id": "1.3.6.1.4.1.8072.3.2.10", "sys_name": "printer-snmp.lab"})


def test_snmp_request_is_what_net_snmp_sends() -> None:
    # The varbind list of `snmpget -v2c -c public -d HOST sysDescr.0 sysObjectID.0 sysName.0`
    # (net-snmp 5.9.3's own encoder), as its -d dump shows it.
    net_snmp_varbinds = bytes.fromhex("302a300c06082b060102010101000500300c06082b060102010102000500"
                                      "300c06082b060102010105000500")
    sent = snmp.request("192.0.2.1", 0x608D2238)
    assert sent == bytes.fromhex("304502010104067075626c6963a038020460 8d22 38 020100020100".replace(" ", "")) + \
        net_snmp_varbinds
    assert snmp.request("192.0.2.1", 0x80)[15:19] == b"\x02\x02\x00\x80"  # a positive INTEGER stays positive


def test_mdns_answer_from_the_lab_responder() -> None:
    assert mdns.parse(mdns_answer(), IDENT) == Reply("s2.local", ServiceInfo("mdns"))


def test_mdns_request_asks_ptr_for_the_reverse_name() -> None:
    query = dpkt.dns.DNS(mdns.request("198.18.0.10", IDENT))
    assert query.id == IDENT and not query.qr and query.rd == 0
    assert [(q.name, q.type, q.cls) for q in query.qd] == [("10.0.18.198.in-addr.arpa", dpkt.dns.DNS_PTR, 1)]


def test_netbios_answer_from_the_lab_responder() -> None:
    reply = netbios.parse(netbios_answer(), IDENT)
    assert reply == Reply("FILES", ServiceInfo("netbios-ns", extra={"workgroup": "LAB", "mac": HOST["mac"]}))


def test_netbios_request_is_rfc1002_node_status() -> None:
    sent = netbios.request("198.18.0.10", IDENT)
    # RFC 1002 section 4.2.17: header with QDCOUNT 1, the 32-byte encoded "*" name, NBSTAT, IN
    assert sent == struct.pack("!6H", IDENT, 0, 1, 0, 0, 0) + b"\x20CK" + b"A" * 30 + b"\0\x00\x21\x00\x01"


def nbstat(entries: list[tuple[bytes, int, int]], stats: bytes = bytes(46), ident: int = IDENT,
           flags: int = 0x8400, count: int | None = None) -> bytes:
    """A Node Status response (RFC 1002 section 4.2.18) with this name table."""
    rdata = bytes((len(entries) if count is None else count,))
    rdata += b"".join(struct.pack("!15sBH", name.ljust(15), suffix, f) for name, suffix, f in entries) + stats
    return (struct.pack("!6H", ident, flags, 0, 1, 0, 0) + b"\x20CK" + b"A" * 30 + b"\0"
            + struct.pack("!HHIH", 0x21, 1, 0, len(rdata)) + rdata)


def test_netbios_windows_like_table() -> None:
    table = [(b"\x01\x02__MSBROWSE__\x02", 0x01, 0x8400), (b"WORKGROUP", 0x1E, 0x8400),
             (b"DESKTOP-AB12CD", 0x20, 0x0400), (b"DESKTOP-AB12CD", 0x00, 0x0400), (b"WORKGROUP", 0x00, 0x8400)]
    reply = netbios.parse(nbstat(table, b"\x00\x15\x5d\x01\x02\x03" + bytes(40)), IDENT)
    assert reply == Reply("DESKTOP-AB12CD",
                          ServiceInfo("netbios-ns", extra={"workgroup": "WORKGROUP", "mac": "00:15:5d:01:02:03"}))


def test_netbios_name_choice() -> None:
    only_server = netbios.parse(nbstat([(b"NAS", 0x20, 0x0400)]), IDENT)
    assert only_server is not None and only_server.name == "NAS"
    conflicted = [(b"OLD", 0x00, 0x0C00), (b"NEW", 0x00, 0x0400)]  # CNF: the host may not keep it
    assert netbios.parse(nbstat(conflicted), IDENT).name == "NEW"  # type: ignore[union-attr]
    group_only = netbios.parse(nbstat([(b"LAB", 0x00, 0x8400)]), IDENT)
    assert group_only == Reply(None, ServiceInfo("netbios-ns", extra={"workgroup": "LAB"}))
    no_stats = netbios.parse(nbstat([(b"PC", 0x00, 0x0400)], stats=b""), IDENT)
    assert no_stats == Reply("PC", ServiceInfo("netbios-ns"))
    escaped = netbios.parse(nbstat([(b"\x1b[31mEVIL\x07", 0x00, 0x0400)]), IDENT)
    assert escaped is not None and escaped.name == "31mEVIL"
    assert netbios.parse(nbstat([(b"\x00\x01\x02\x7f", 0x00, 0x0400)]), IDENT).name is None  # type: ignore[union-attr]


def snmp_response(varbinds: list[tuple[bytes, bytes]], ident: int = SNMP_IDENT, error: int = 0) -> bytes:
    """A v2c Response with these (OID TLV, value TLV) varbinds, by the module's own encoder."""
    body = b"".join(tlv(0x30, oid + value) for oid, value in varbinds)
    pdu = tlv(0xA2, snmp._integer(ident) + snmp._integer(error) + snmp._integer(0) + tlv(0x30, body))
    return tlv(0x30, snmp._integer(1) + tlv(0x04, b"public") + pdu)


def oid(dotted: str) -> bytes:
    return tlv(0x06, snmp._oid_bytes(dotted))


def test_snmp_other_agents_and_partial_answers() -> None:
    cisco = snmp_response([(oid(snmp.SYS_DESCR), tlv(4, b"Cisco IOS Software, C2960")),
                           (oid(snmp.SYS_OBJECT_ID), oid("1.3.6.1.4.1.9.1.1208")),
                           (oid(snmp.SYS_NAME), tlv(4, b"Core-SW1.example.net"))])
    reply = snmp.parse(cisco, SNMP_IDENT)
    assert reply is not None and reply.name == "core-sw1.example.net" and reply.service.product is None
    assert reply.service.cpe is None and reply.evidence == "Cisco IOS Software, C2960"
    # noSuchObject ([0x80]) for two of them: still an SNMP agent, with what it did say
    partial = snmp_response([(oid(snmp.SYS_DESCR), b"\x80\x00"), (oid(snmp.SYS_OBJECT_ID), b"\x80\x00"),
                             (oid(snmp.SYS_NAME), tlv(4, b"ap1"))])
    assert snmp.parse(partial, SNMP_IDENT) == Reply("ap1", ServiceInfo("snmp", extra={"sys_name": "ap1"}))
    refused = snmp_response([], error=2)  # noSuchName, no varbinds
    assert snmp.parse(refused, SNMP_IDENT) == Reply(None, ServiceInfo("snmp"))
    wrong_type = snmp_response([(oid(snmp.SYS_DESCR), oid("1.3.6")), (oid(snmp.SYS_NAME), tlv(2, b"\x01"))])
    assert snmp.parse(wrong_type, SNMP_IDENT) == Reply(None, ServiceInfo("snmp"))


# --- answers that are not ours ---

@pytest.mark.parametrize(("module", "answer", "ident"), SAMPLES, ids=lambda v: getattr(v, "source", None))
def test_wrong_id_is_not_an_answer(module: ModuleType, answer: bytes, ident: int) -> None:
    assert module.parse(answer, ident) is not None
    assert module.parse(answer, ident ^ 1) is None


@pytest.mark.parametrize("module", QUERIES, ids=lambda m: m.source)
def test_a_query_is_not_an_answer(module: ModuleType) -> None:
    assert module.parse(module.request("198.18.0.10", IDENT), IDENT) is None


def test_error_answers_are_not_names() -> None:
    header = bytearray(mdns_answer())
    header[3] |= 0x03  # rcode NXDOMAIN
    assert mdns.parse(bytes(header), IDENT) is None
    assert netbios.parse(nbstat([(b"PC", 0, 0x0400)], flags=0x8403), IDENT) is None
    assert snmp.parse(snmp_recorded().replace(b"\xa2", b"\xa0", 1), SNMP_IDENT) is None  # a GetRequest


def test_mdns_extra_records_of_unknown_types_are_skipped() -> None:
    # mDNSResponder adds NSEC (type 47, which dpkt cannot parse) as an additional record.
    answer = bytearray(mdns_answer())
    answer[11] = 1  # ARCOUNT
    answer += b"\xc0\x0c" + struct.pack("!HHIH", 47, 0x8001, 10, 6) + b"\xc0\x0c\x00\x02\x00\x08"
    assert mdns.parse(bytes(answer), IDENT) == Reply("s2.local", ServiceInfo("mdns"))


def dns_answer(rdata_name: bytes, ident: int = IDENT, extra: bytes = b"") -> bytes:
    """A one-answer PTR response with this raw (wire-format) target name."""
    question = b"\x0210\x010\x0218\x03198\x07in-addr\x04arpa\x00" + struct.pack("!HH", 12, 1)
    record = b"\xc0\x0c" + struct.pack("!HHIH", 12, 1, 10, len(rdata_name)) + rdata_name
    return struct.pack("!6H", ident, 0x8400, 1, 1, 0, 0) + question + record + extra


def test_mdns_hostile_names() -> None:
    plain = mdns.parse(dns_answer(b"\x07printer\x05local\x00"), IDENT)
    assert plain is not None and plain.name == "printer.local"
    target = len(dns_answer(b""))  # where the PTR target starts
    loop = dns_answer(struct.pack("!H", 0xC000 | target))  # it points at itself: a compression loop
    assert mdns.parse(loop, IDENT) is None
    forward = dns_answer(b"\xc0\x7f")  # a pointer past the end
    assert mdns.parse(forward, IDENT) is None
    huge = b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\x00"  # 320 bytes: beyond RFC 1035's 255
    assert mdns.parse(dns_answer(huge), IDENT) is None
    assert mdns.parse(dns_answer(b"\x3f" + b"x" * 10 + b"\x00"), IDENT) is None  # label past the data
    unprintable = mdns.parse(dns_answer(b"\x0b\x1b[2J\x07evil\r\n\x05local\x00"), IDENT)
    assert unprintable is not None and unprintable.name == "2j-evil-.local"
    nothing_sane = mdns.parse(dns_answer(b"\x04\x00\x01\x02\x03\x00"), IDENT)
    assert nothing_sane == Reply(None, ServiceInfo("mdns"))
    not_utf8 = mdns.parse(dns_answer(b"\x02\xff\xfe\x00"), IDENT)
    assert not_utf8 == Reply(None, ServiceInfo("mdns"))  # no usable name, but a responder answered


def test_clean_name() -> None:
    assert clean_name("Printer.LOCAL.") == "printer.local"
    assert clean_name("FILES", lower=False) == "FILES"
    assert clean_name("my printer") == "my-printer"
    assert clean_name("host\x00\x00") == "host"
    assert clean_name("\x1b\x07\x00") is None
    assert clean_name("") is None
    assert len(clean_name("a." * 1000) or "") <= NAME_MAX


# --- truncated, random and hostile bytes ---

@pytest.mark.parametrize(("module", "answer", "ident"), SAMPLES, ids=lambda v: getattr(v, "source", None))
def test_every_prefix(module: ModuleType, answer: bytes, ident: int) -> None:
    for length in range(len(answer)):
        result = module.parse(answer[:length], ident)
        check(result)
        if module is snmp:
            assert result is None  # every BER length is checked: a cut message never parses


@pytest.mark.parametrize("module", QUERIES, ids=lambda m: m.source)
def test_seeded_garbage(module: ModuleType) -> None:
    rng = random.Random(f"garbage-{module.source}")
    for _ in range(2000):
        check(module.parse(rng.randbytes(rng.randrange(0, 600)), IDENT))
    for _, sample, ident in SAMPLES:  # mutated answers reach deeper into each parser than noise
        for _ in range(300):
            mutated = bytearray(sample)
            for _ in range(rng.randrange(1, 8)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            check(module.parse(bytes(mutated), ident))


MEGABYTE = 1024 * 1024
HOSTILE = [
    b"",
    b"\0" * 4096,
    b"\xff" * 4096,
    b"\x30\x84\xff\xff\xff\xff" + b"\0" * 64,  # BER: a 4 GB length
    b"\x30\x85\x01\x00\x00\x00\x00" + b"\0" * 64,  # BER: a 5-byte length
    b"\x30\x80\x02\x01\x01\x00\x00",  # BER: the indefinite form
    b"\x30" * 32768,  # BER: nesting without end
    struct.pack("!6H", IDENT, 0x8400, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF),  # DNS: counts with no records
    struct.pack("!6H", IDENT, 0x8400, 0, 1, 0, 0) + b"\xc0\x0c" * 8,  # DNS: a pointer into the header
    struct.pack("!6H", IDENT, 0x8400, 0, 1, 0, 0) + b"\x3f" * 48,  # DNS: labels past the end
    struct.pack("!6H", IDENT, 0x8400, 0, 1, 0, 0) + b"\x20" + b"CK" * 16 + b"\0"
    + struct.pack("!HHIH", 0x21, 1, 0, 0xFFFF) + b"\xff",  # NBSTAT: RDLENGTH and count beyond the data
    nbstat([(b"PC", 0, 0x0400)] * 255),  # NBSTAT: the largest table
    nbstat([(b"PC", 0, 0x0400)], count=200),
    snmp_response([(oid(snmp.SYS_NAME), tlv(4, b"x" * 60000))]),  # a 60 kB sysName
    snmp_response([(oid(snmp.SYS_OBJECT_ID), tlv(6, b"\xff" * 5000 + b"\x01"))]),  # an endless arc
    snmp_response([(oid(snmp.SYS_OBJECT_ID), tlv(6, b"\x01" * 200))]),  # 200 arcs
    snmp_response([(oid(snmp.SYS_DESCR), tlv(4, "é\x1b[0m\x00".encode() * 20000))]),
    snmp_response([(oid(snmp.SYS_NAME), tlv(4, b"n"))] * 10000),  # varbinds without end
    snmp_recorded() + b"\x00\x00",  # trailing bytes
    tlv(0x30, snmp._integer(1) + tlv(4, b"public") + tlv(  # a 9-byte request-id
        0xA2, tlv(2, bytes(7) + b"NS") + snmp._integer(0) * 2 + tlv(0x30, b""))),
]


@pytest.mark.parametrize("module", QUERIES, ids=lambda m: m.source)
def test_hostile_inputs(module: ModuleType) -> None:
    for data in HOSTILE:
        for ident in (IDENT, SNMP_IDENT):
            started = time.monotonic()
            check(module.parse(data, ident))
            assert time.monotonic() - started < 1.0, f"{module.source} is slow on {data[:24]!r}"


def test_hostile_snmp_answers_give_no_name_or_a_bounded_one() -> None:
    long_name = snmp.parse(HOSTILE[13], SNMP_IDENT)
    assert long_name is not None and len(long_name.name or "") == NAME_MAX
    assert snmp.parse(HOSTILE[14], SNMP_IDENT) == Reply(None, ServiceInfo("snmp"))  # the bad OID is dropped
    assert snmp.parse(HOSTILE[15], SNMP_IDENT) == Reply(None, ServiceInfo("snmp"))
    descr = snmp.parse(HOSTILE[16], SNMP_IDENT)
    assert descr is not None and descr.evidence is not None and "\x1b" not in descr.evidence
    assert len(descr.evidence) <= BANNER_MAX
    endless = snmp.parse(HOSTILE[17], SNMP_IDENT)  # the first varbinds are read, the rest not
    assert endless is not None and endless.name == "n"
    assert snmp.parse(HOSTILE[18], SNMP_IDENT) is None
    assert snmp.parse(HOSTILE[19], SNMP_IDENT) is None
