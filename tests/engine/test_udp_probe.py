"""The UDP probe's frames and its reading of replies, per payload.

Frames are parsed with dpkt (an implementation of the protocols independent of ours) to check
checksums and the fields each service reads; replies are built the way each service builds
them from the request it got, and must match only when they carry the probe's cookie back."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import replace

import dpkt
import pytest

from netscand.engine import frames, sockets
from netscand.engine import plan as plans
from netscand.engine.clock import TICK_BITS, TICK_MASK
from netscand.engine.cookie import cookie
from netscand.engine.probes import PROBES, udp
from netscand.engine.probes.payloads import PAYLOAD_PORTS, PAYLOADS
from netscand.engine.shm import MALFORMED, PLAN_SLOTS, S_CLOSED, S_OPEN, S_UNREACH
from netscand.scan.work import SPORT_BASE

SRC_MAC, HOST_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000010")
SRC_IP, HOSTS = 0xC6120001, (0xC6120010, 0xC6120011)
OTHER = 40000  # a port without a payload: the empty datagram
PORTS = (*PAYLOAD_PORTS, OTHER)
TICK = 0x2A5
KEY = bytes(range(16))


def make_plan(ports: tuple[int, ...] = PORTS) -> plans.Plan:
    return plans.Plan(gen=3, kind=udp.PROBE.kind, slot=2, share=1, retries=1, key=KEY, ifindex=2,
                      src_ip=SRC_IP, src_mac=SRC_MAC, sport_base=61440, rate=100.0, timeout_init_ms=500,
                      timeout_min_ms=100, timeout_max_ms=1000, shard_size=1024, hosts=HOSTS,
                      macs=(HOST_MAC, bytes.fromhex("020000000011")), ports=ports)


PROBE = udp.Udp(make_plan())


def sent(port: int, host: int = 0, tick: int = TICK) -> dpkt.ethernet.Ethernet:
    return dpkt.ethernet.Ethernet(bytes(PROBE.frame(host, PORTS.index(port), tick)))


def the_cookie(port: int, host: int = 0, tick: int = TICK) -> int:
    return cookie(KEY, 2, HOSTS[host], port, 61440 + tick)


def back(probe: dpkt.ethernet.Ethernet, data: bytes, sport: int | None = None, src: bytes | None = None) -> bytes:
    """A UDP datagram answering `probe`, with checksums as a real stack sends them."""
    ip, seg = probe.data, probe.data.data
    reply = dpkt.udp.UDP(sport=seg.dport if sport is None else sport, dport=seg.sport, ulen=8 + len(data), data=data)
    out = dpkt.ip.IP(src=src or ip.dst, dst=ip.src, p=17, ttl=57, id=77, data=reply)
    out.len = 20 + len(bytes(reply))
    return bytes(dpkt.ethernet.Ethernet(src=probe.dst, dst=probe.src, data=out))


ROUTER = b"\xc6\x12\0\xfe"


def icmp_error(probe: dpkt.ethernet.Ethernet, code: int, quote: int = 28, src: bytes | None = None) -> bytes:
    """The unreachable the probed host sends (or `src`, a router on the way)."""
    quoted = bytes(probe.data)[:quote]
    icmp = dpkt.icmp.ICMP(type=3, code=code, data=dpkt.icmp.ICMP.Unreach(data=quoted))
    out = dpkt.ip.IP(src=src or probe.data.dst, dst=probe.data.src, p=1, ttl=63, data=icmp)
    return bytes(dpkt.ethernet.Ethernet(src=probe.dst, dst=probe.src, data=out))


def payload_of(port: int) -> bytes:
    return bytes(sent(port).data.data.data)


# -- frames ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("port", PORTS)
@pytest.mark.parametrize("host", [0, 1])
def test_every_frame_has_right_checksums_addressing_and_ip_id(port: int, host: int) -> None:
    frame = sent(port, host)
    ip, seg = frame.data, frame.data.data
    assert (frame.dst, frame.src, frame.type) == (PROBE.plan.macs[host], SRC_MAC, 0x0800)
    assert (int.from_bytes(ip.src, "big"), int.from_bytes(ip.dst, "big"), ip.p, ip.ttl) == (SRC_IP, HOSTS[host], 17, 64)
    assert (seg.sport, seg.dport, seg.ulen) == (61440 + TICK, port, 8 + len(seg.data))
    assert ip.id == the_cookie(port, host) >> 16
    sums = (ip.sum, seg.sum)
    ip.sum = seg.sum = 0
    again = dpkt.ip.IP(bytes(ip))  # dpkt computes both checksums afresh when they are 0
    assert (again.sum, again.data.sum) == sums
    assert len(bytes(frame)) <= 1514


def test_the_frames_template_is_patched_whole_for_each_probe() -> None:
    """The buffer is shared by every probe of a payload: nothing of one probe is left in the next."""
    first = bytes(PROBE.frame(0, PORTS.index(5060), 1))
    bytes(PROBE.frame(1, PORTS.index(5060), 2))
    assert bytes(PROBE.frame(0, PORTS.index(5060), 1)) == first


def test_dns_mdns_and_netbios_queries() -> None:
    dns = dpkt.dns.DNS(payload_of(53))
    assert (dns.id, dns.qr, dns.rd, [(q.name, q.type, q.cls) for q in dns.qd]) == (
        the_cookie(53) >> 16, 0, 1, [("version.bind", dpkt.dns.DNS_TXT, dpkt.dns.DNS_CHAOS)])
    mdns = dpkt.dns.DNS(payload_of(5353))
    assert (mdns.id, [(q.name, q.type) for q in mdns.qd]) == (
        the_cookie(5353) >> 16, [("_services._dns-sd._udp.local", dpkt.dns.DNS_PTR)])
    nbns = dpkt.netbios.NS(payload_of(137))
    assert (nbns.id, [(dpkt.netbios.decode_name(q.name), q.type) for q in nbns.qd]) == (
        the_cookie(137) >> 16, [("*", dpkt.netbios.NS_NBSTAT)])
    assert b"\x20CK" + b"A" * 30 + b"\0" in payload_of(137)  # "*" padded with NULs, not spaces


def test_ntp_request_carries_the_cookie_in_its_transmit_timestamp() -> None:
    ntp = dpkt.ntp.NTP(payload_of(123))
    c = the_cookie(123)
    assert (ntp.v, ntp.mode, ntp.transmit_time) == (4, dpkt.ntp.CLIENT, c.to_bytes(4, "big") * 2)


def test_snmp_v3_discovery_with_the_cookie_as_msg_id() -> None:
    data = payload_of(161)
    c = the_cookie(161)
    # SEQUENCE { INTEGER 3, SEQUENCE { INTEGER msgID, INTEGER 65507, OCTET STRING 04, INTEGER 3 }, ...
    assert data[:9] == bytes.fromhex("303b 020103 3011 0204")
    assert data[9:13] == (0x40000000 | c >> 2).to_bytes(4, "big")
    assert data[13:24] == bytes.fromhex("020300ffe3 040104 020103")
    # an empty USM (no engine ID, no user) and a scoped GetRequest of nothing
    assert data[24:] == bytes.fromhex("0410 300e 0400 020100 020100 0400 0400 0400"
                                      "3011 0400 0400 a00b 020100 020100 020100 3000")


def test_ike_sa_init_with_the_cookie_as_initiator_spi() -> None:
    data = payload_of(500)
    c = the_cookie(500)
    spi_i, spi_r, nxt, version, exchange, flags, msg_id, length = struct.unpack_from("!QQBBBBII", data)
    assert (spi_i, spi_r, nxt, version, exchange, flags, msg_id, length) == (
        c << 32 | c, 0, 33, 0x20, 34, 0x08, 0, len(data))
    payloads, at = [], 28
    while nxt:
        payloads.append(nxt)
        nxt, size = data[at], struct.unpack_from("!H", data, at + 2)[0]
        at += size
    assert payloads == [33, 34, 40] and at == len(data)  # SA, KE, nonce


def test_sip_options_with_the_cookie_in_branch_and_call_id() -> None:
    req = dpkt.sip.Request(payload_of(5060))
    tag = b"%08x" % the_cookie(5060)
    assert req.method == "OPTIONS"
    assert req.headers["via"].endswith(f"branch=z9hG4bK{tag.decode()};rport")
    assert req.headers["call-id"] == f"{tag.decode()}@nm.invalid"


def test_tftp_rrq_portmap_null_memcached_coap_openvpn_ssdp_wsd_and_the_empty_datagram() -> None:
    tftp = dpkt.tftp.TFTP(payload_of(69))
    assert (tftp.opcode, tftp.mode) == (dpkt.tftp.OP_RRQ, b"octet")
    rpc = dpkt.rpc.RPC(payload_of(111))
    assert (rpc.xid, rpc.dir, rpc.call.prog, rpc.call.vers, rpc.call.proc) == (the_cookie(111), dpkt.rpc.CALL,
                                                                             100000, 2, 0)
    assert payload_of(11211) == (the_cookie(11211) >> 16).to_bytes(2, "big") + b"\0\0\0\x01\0\0version\r\n"
    coap = payload_of(5683)
    assert coap[:4] == b"\x44\x01" + (the_cookie(5683) >> 16).to_bytes(2, "big")  # CON GET, message ID
    assert coap[4:8] == the_cookie(5683).to_bytes(4, "big") and coap[8:] == b"\xbb.well-known\x04core"
    vpn = payload_of(1194)
    assert vpn == b"\x38" + the_cookie(1194).to_bytes(4, "big") * 2 + b"\0" * 5
    assert payload_of(1900).startswith(b"M-SEARCH * HTTP/1.1\r\n") and b"ST: upnp:rootdevice\r\n" in payload_of(1900)
    wsd = ET.fromstring(payload_of(3702))
    message_id = wsd.find(".//{http://schemas.xmlsoap.org/ws/2004/08/addressing}MessageID")
    assert message_id is not None and message_id.text == f"urn:uuid:{the_cookie(3702):08x}-6e73-4d00-8000-6e6574736361"
    assert payload_of(OTHER) == b""


# -- replies, as each service builds them ------------------------------------------------------------
def dns_reply(req: bytes) -> bytes:
    msg = dpkt.dns.DNS(req)
    msg.qr, msg.rcode = dpkt.dns.DNS_R, dpkt.dns.DNS_RCODE_REFUSED
    return bytes(msg)


def nbns_reply(req: bytes) -> bytes:
    msg = dpkt.netbios.NS(req)
    msg.qr, msg.qd = dpkt.dns.DNS_R, []
    return bytes(msg)


def ntp_reply(req: bytes) -> bytes:
    got = dpkt.ntp.NTP(req)
    stamp = (0xE9A1_0000_8000_0000).to_bytes(8, "big")
    return bytes(dpkt.ntp.NTP(v=4, mode=dpkt.ntp.SERVER, stratum=2, id=b"GPS\0", update_time=stamp,
                              originate_time=got.transmit_time, receive_time=stamp, transmit_time=stamp))


def tlv(tag: int, body: bytes) -> bytes:
    """Long-form lengths, as an agent may send them: the parser must not assume short ones."""
    return bytes((tag, 0x82)) + len(body).to_bytes(2, "big") + body


def snmp_reply(req: bytes) -> bytes:
    """Net-SNMP's Report to a discovery (recorded in the lab), with the request's msgID."""
    recorded = bytes.fromhex(
        "306e0201033011020441234567020300ffe30401000201030421301f041180001f8880017658376e30166b0000"
        "00000201010201020400040004003033041180001f8880017658376e30166b000000000400a81c02010102010002"
        "01003011300f060a2b060106030f01010400410101")
    return recorded[:7] + req[7:13] + recorded[13:]  # the INTEGER msgID as the request encodes it


def ike_reply(req: bytes) -> bytes:
    notify = b"\x00\x00\x00\x0a" + b"\x00\x00\x00\x11" + b"\x00\x13"  # INVALID_KE_PAYLOAD: wants group 19
    return req[:8] + b"\x77" * 8 + b"\x29\x20\x22\x20" + b"\0" * 4 + (28 + len(notify)).to_bytes(4, "big") + notify


def sip_reply(req: bytes) -> bytes:
    got = dpkt.sip.Request(req)
    return (b"SIP/2.0 200 OK\r\nVia: " + got.headers["via"].encode() + b";received=198.18.0.1\r\n"
            b"From: " + got.headers["from"].encode() + b"\r\nTo: " + got.headers["to"].encode() + b";tag=x\r\n"
            b"Call-ID: " + got.headers["call-id"].encode() + b"\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")


def rpc_reply(req: bytes) -> bytes:
    return req[:4] + struct.pack("!IIIII", 1, 0, 0, 0, 0) + b"\0\0\0\0"  # REPLY, accepted, AUTH_NULL, success, end


def wsd_reply(req: bytes) -> bytes:
    message_id = req[req.index(b"urn:uuid:") :].split(b"<")[0]
    return (b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"'
            b' xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing"><soap:Header><wsa:RelatesTo>'
            + message_id + b"</wsa:RelatesTo></soap:Header><soap:Body/></soap:Envelope>")


def coap_reply(req: bytes) -> bytes:
    return b"\x64\x45" + req[2:8] + b"\xff</sensors>"  # ACK 2.05 Content, message ID and token echoed


def openvpn_reply(req: bytes) -> bytes:
    # HARD_RESET_SERVER_V2, its session ID, one ack (packet 0) of our session ID, packet ID 0
    return b"\x40" + b"\x99" * 8 + b"\x01" + b"\0" * 4 + req[1:9] + b"\0" * 4


REPLIES: dict[int, Callable[[bytes], bytes]] = {
    53: dns_reply, 5353: dns_reply, 137: nbns_reply, 123: ntp_reply, 161: snmp_reply, 500: ike_reply,
    5060: sip_reply, 111: rpc_reply, 3702: wsd_reply, 5683: coap_reply, 1194: openvpn_reply,
    11211: lambda req: req[:8] + b"VERSION 1.6.18\r\n",
    1900: lambda req: b"HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\n\r\n",
    69: lambda req: bytes(dpkt.tftp.TFTP(opcode=dpkt.tftp.OP_ERR, errcode=1, errmsg=b"File not found")),
    OTHER: lambda req: b"hello",
}
ECHOING = sorted(p for p in REPLIES if p in PAYLOADS and PAYLOADS[p].echoes)


def test_every_payload_has_a_reply_here() -> None:
    assert set(REPLIES) == set(PORTS)


@pytest.mark.parametrize("port", PORTS)
def test_a_reply_is_open_timed_by_the_tick_it_was_sent_to_and_passes_the_frame_checks(port: int) -> None:
    probe = sent(port, host=1)
    frame = back(probe, REPLIES[port](bytes(probe.data.data.data)))
    assert PROBE.answer(frame) == (1, PORTS.index(port), S_OPEN, TICK & TICK_MASK, 57, 0, 0, 0, b"", b"")
    assert frames.check(frame) == 0 and frames.checksum_ok(frame)


@pytest.mark.parametrize("port", ECHOING)
def test_a_reply_echoing_another_probes_cookie_is_not_ours(port: int) -> None:
    """The reply another host's probe, or a probe sent at another tick, would get."""
    elsewhere = REPLIES[port](bytes(sent(port, host=0).data.data.data))
    assert PROBE.answer(back(sent(port, host=1), elsewhere)) is None
    later = REPLIES[port](bytes(sent(port, host=1, tick=TICK + 1).data.data.data))
    assert PROBE.answer(back(sent(port, host=1), later)) is None


@pytest.mark.parametrize("port", ECHOING)
def test_a_reply_cut_before_its_echo_is_not_ours(port: int) -> None:
    """Cut by its sender: the UDP and IP lengths say so, and the echoed field is not there."""
    probe = sent(port)
    data = REPLIES[port](bytes(probe.data.data.data))
    cut = {53: 11, 5353: 11, 137: 11, 123: 30, 161: 12, 500: 7, 5060: 40, 111: 3, 3702: 150, 5683: 6,
           1194: 17, 11211: 1}[port]
    assert PROBE.answer(back(probe, data[:cut])) is None


@pytest.mark.parametrize("port", PORTS)
def test_a_reply_from_elsewhere_is_not_ours(port: int) -> None:
    probe = sent(port)
    data = REPLIES[port](bytes(probe.data.data.data))
    stranger = back(probe, data, src=b"\xc6\x12\0\x63")  # not a plan host
    wrong_port = back(probe, data, sport=port + 1 if port != 69 else 68)
    outside = bytearray(back(probe, data))
    struct.pack_into("!H", outside, 36, 61440 - 1)  # to a port below our source ports
    assert PROBE.answer(stranger) is None and PROBE.answer(bytes(outside)) is None
    assert port == 69 or PROBE.answer(wrong_port) is None  # TFTP answers from a port of its own


def test_tftp_answers_from_a_new_port_and_is_attributed_to_69() -> None:
    probe = sent(69)
    error = bytes(dpkt.tftp.TFTP(opcode=dpkt.tftp.OP_ERR, errcode=1, errmsg=b"File not found"))
    got = PROBE.answer(back(probe, error, sport=49731))
    assert got is not None and (got.host, PORTS[got.port], got.state) == (0, 69, S_OPEN)
    assert PROBE.answer(back(probe, b"\0\x09not tftp", sport=49731)) is None  # no such opcode
    without_69 = udp.Udp(make_plan(tuple(p for p in PORTS if p != 69)))
    assert without_69.answer(back(probe, error, sport=49731)) is None


def test_a_coap_reset_of_our_message_id_is_a_coap_stack() -> None:
    probe = sent(5683)
    reset = b"\x70\x00" + bytes(probe.data.data.data)[2:4]
    assert PROBE.answer(back(probe, reset)) is not None
    assert PROBE.answer(back(probe, b"\x70\x00\x12\x34")) is None


def test_a_wsd_reply_cut_by_the_snap_length_before_relates_to_counts() -> None:
    """A ProbeMatches envelope's namespaces can fill the 256 bytes a worker captures: what is
    there contradicts nothing, as for the protocols that echo nothing."""
    probe = sent(3702)
    long_head = (b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope ' + b'xmlns:x="urn:x" ' * 40
                 + b"><soap:Header><wsa:RelatesTo>urn:uuid:00000000</wsa:RelatesTo></soap:Header></soap:Envelope>")
    frame = back(probe, long_head)
    assert PROBE.answer(frame[:256]) is not None
    assert PROBE.answer(frame) is None  # whole, it relates to another message


# -- ICMP errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("code", "state"), [(3, S_CLOSED), (0, S_UNREACH), (1, S_UNREACH), (2, S_UNREACH),
                                             (9, S_UNREACH), (10, S_UNREACH), (13, S_UNREACH)])
def test_unreachables_quoting_a_probe_say_closed_or_filtered(code: int, state: int) -> None:
    for port in (53, 5060, OTHER):
        probe = sent(port, host=1)
        for quote in (28, len(bytes(probe.data))):  # the 8 bytes RFC 792 asks, and Linux's whole datagram
            assert PROBE.answer(icmp_error(probe, code, quote)) == (1, PORTS.index(port), state, TICK, 63, 0, 0, 0,
                                                                    b"", b"")
        # From a router on the way (a REJECT rule), even port unreachable says a filter.
        assert PROBE.answer(icmp_error(probe, code, src=ROUTER)) == (1, PORTS.index(port), S_UNREACH, TICK, 63,
                                                                     0, 0, 0, b"", b"")


def test_other_icmp_and_forged_quotes_are_not_ours() -> None:
    probe = sent(53)
    assert PROBE.answer(icmp_error(probe, 4)) is None  # fragmentation needed
    forged = bytearray(icmp_error(probe, 3))
    forged[14 + 20 + 8 + 4] ^= 0x01  # the quoted IP ID: the cookie's high half
    assert PROBE.answer(bytes(forged)) is None
    assert PROBE.answer(icmp_error(probe, 3, quote=27)) is None  # the quote stops inside the ports


def test_a_damaged_reply_is_dropped_by_its_checksum() -> None:
    probe = sent(OTHER)
    frame = bytearray(back(probe, b"hello"))
    frame[-1] ^= 0x20
    counts = [0] * len(MALFORMED)
    assert PROBE.answer(bytes(frame)) is not None
    assert frames.take(bytes(frame), [_Held(PROBE)], counts) is None and counts[frames.BAD_CHECKSUM] == 1


class _Held:
    def __init__(self, probe: udp.Udp) -> None:
        self.probe = probe


def test_the_registered_probe_type() -> None:
    ptype = PROBES[5]
    assert (ptype.name, ptype.protocol, ptype.port_states, ptype.ports) == ("udp", "udp", True, True)
    assert PAYLOAD_PORTS == tuple(sorted(PAYLOAD_PORTS)) and {53, 123, 161, 11211} <= set(PAYLOAD_PORTS)


def test_a_tftp_reply_from_a_port_also_probed_is_credited_to_69() -> None:
    """tftpd answers from an ephemeral port; if the scan probed that port too (with the empty
    datagram, which checks nothing), the TFTP reply is still 69's, not that port's."""
    ephemeral = 45678
    both = udp.Udp(make_plan((69, ephemeral)))
    probe = dpkt.ethernet.Ethernet(bytes(both.frame(0, 0, TICK)))
    error = bytes(dpkt.tftp.TFTP(opcode=dpkt.tftp.OP_ERR, errcode=1, errmsg=b"File not found"))
    got = both.answer(back(probe, error, sport=ephemeral))
    assert got is not None and (got.port, got.state) == (0, S_OPEN)
    to_empty = dpkt.ethernet.Ethernet(bytes(both.frame(0, 1, TICK)))
    got = both.answer(back(to_empty, b"", sport=ephemeral))  # the empty datagram's own answer
    assert got is not None and (got.port, got.state) == (1, S_OPEN)


class _Running:
    def __init__(self, probe: udp.Udp) -> None:
        self.probe = probe


@pytest.mark.parametrize("port", [1900, 69, OTHER])
def test_two_plans_of_the_same_hosts_each_get_only_their_own_cookieless_replies(port: int) -> None:
    """Two UDP scans of the same hosts and ports at once: a reply that echoes no cookie (SSDP,
    TFTP, the empty datagram) names its plan only by the source port it comes back to, so each
    plan slot sends from its own block of them (scan/work.py)."""
    a, b = (udp.Udp(replace(make_plan(), slot=slot, sport_base=SPORT_BASE + (slot << TICK_BITS)))
            for slot in (1, 2))
    running = [_Running(a), _Running(b)]
    for mine in running:
        probe = dpkt.ethernet.Ethernet(bytes(mine.probe.frame(1, PORTS.index(port), TICK)))
        data = REPLIES[port](bytes(probe.data.data.data))
        for order in (running, running[::-1]):
            hit = frames.take(back(probe, data, sport=49731 if port == 69 else None), order, [0] * len(MALFORMED))
            assert hit is not None and hit[0] is mine and PORTS[hit[1].port] == port
    assert a.plan.source_ports[1] < b.plan.source_ports[0]
    assert a.plan.every_slot_ports == b.plan.every_slot_ports == (SPORT_BASE, SPORT_BASE + (PLAN_SLOTS << TICK_BITS) - 1)


def test_every_payload_fits_a_sender_frame() -> None:
    """Ethernet, IPv4 and UDP headers (42 bytes) and the largest payload fit the send buffer's slot."""
    assert 42 + max(len(p.data) for p in PAYLOADS.values()) <= sockets.Sender.FRAME_MAX
