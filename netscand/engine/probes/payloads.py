"""UDP payloads: per port, the datagram a service there answers, where the probe's cookie goes
in it, and how its reply is recognised (masscan's payloads-udp and nmap's nmap-payloads in
spirit; the bytes are written here from the protocols' specifications).

A UDP service that does not understand a datagram says nothing, so an empty datagram finds few
open ports: each payload below is a request its service answers whatever its configuration
(a version or status query, a request it refuses with an error that is still a reply).

Where the protocol echoes a field of the request in its reply (a DNS ID, an NTP origin
timestamp, an SNMP msgID, an IKE initiator SPI...), the cookie goes in that field and a
reply counts only when it carries it back. Where nothing is echoed (SSDP, TFTP, the empty
datagram of every other port; and in practice WS-Discovery, whose RelatesTo is mostly past the
snap length), a reply counts when it comes from a plan host, from the probed port (TFTP aside,
see below), to its plan's source ports: that is as much as the protocol lets anyone verify, and
what masscan does.

Every `answers` predicate reads the reply's UDP payload as captured (possibly cut by the
receive snap length: `cut`) and is total: it never raises on any bytes, and reads a bounded
number of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from netscand.wire import ber, dns
from netscand.wire.ber import tlv

Encoder = Callable[[int], bytes]  # the probe's 32-bit cookie -> the bytes of a cookie field


def u16(c: int) -> bytes:
    return (c >> 16).to_bytes(2, "big")  # the cookie's high half: its low bits hold the plan slot


def u32(c: int) -> bytes:
    return c.to_bytes(4, "big")


def u64(c: int) -> bytes:
    return c.to_bytes(4, "big") * 2


def hex8(c: int) -> bytes:
    return b"%08x" % c


def snmp_id(c: int) -> bytes:
    # A BER INTEGER's encoding is minimal, and an agent re-encodes the msgID minimally in its
    # Report: 0x40000000-0x7FFFFFFF always takes exactly 4 bytes, so the field has a
    # fixed place and the comparison is of values. It keeps the cookie's 30 hashed bits.
    return (0x40000000 | c >> 2).to_bytes(4, "big")


class Payload(NamedTuple):
    name: str
    data: bytes  # the datagram; cookie fields hold placeholder bytes
    fields: tuple[tuple[int, Encoder], ...]  # (offset in data, what the cookie becomes there)
    # (reply payload, cookie, cut by the snap length) -> whether it is a reply to this probe
    answers: Callable[[bytes, int, bool], bool]
    echoes: bool = True  # the reply carries the cookie back
    # Replies come from another port than the probed one (TFTP answers from a new port, its
    # transfer ID): recognised by what they say, and attributed to the probed port.
    other_port: bool = False


# -- replies --------------------------------------------------------------------------------------

def _dns_reply(data: bytes, c: int, cut: bool) -> bool:
    """DNS, mDNS (legacy unicast) and NetBIOS-NS: the ID echoed, the response bit set."""
    return len(data) >= 12 and data[:2] == u16(c) and data[2] & 0x80 != 0


def _ntp_reply(data: bytes, c: int, cut: bool) -> bool:
    """A server-mode packet whose origin timestamp is our transmit timestamp."""
    return len(data) >= 48 and data[0] & 7 == 4 and data[24:32] == u64(c)


def _snmp_reply(data: bytes, c: int, cut: bool) -> bool:
    """SNMPv3Message SEQUENCE { msgVersion 3, msgGlobalData SEQUENCE { msgID, ... }, ... }: the
    four TLV heads read in turn, no recursion, each bounded by what was captured."""
    head = ber.head(data, 0)
    if head is None or head[0] != 0x30:
        return False
    version = ber.head(data, head[1])
    if version is None or version[0] != 0x02 or data[version[1] : version[2]] != b"\x03":
        return False
    header = ber.head(data, version[2])
    if header is None or header[0] != 0x30:
        return False
    msg_id = ber.head(data, header[1])
    return msg_id is not None and msg_id[0] == 0x02 and data[msg_id[1] : msg_id[2]] == snmp_id(c)


def _any_reply(data: bytes, c: int, cut: bool) -> bool:
    """Nothing is echoed (SSDP, the empty datagram): that the plan host answered from the probed
    port to our source ports is all there is to check, and the caller has."""
    return True


def _tftp_reply(data: bytes, c: int, cut: bool) -> bool:
    """An ERROR (5: the file we asked for is not there), or DATA (3) or OACK (6) if it is."""
    return len(data) >= 4 and data[0] == 0 and data[1] in (3, 5, 6)


def _ike_reply(data: bytes, c: int, cut: bool) -> bool:
    """Any ISAKMP message (IKEv2 or v1, a response or a notify refusing our proposal) that
    begins with our initiator SPI."""
    return len(data) >= 28 and data[:8] == u64(c)


def _sip_reply(data: bytes, c: int, cut: bool) -> bool:
    """A response echoes the Via branch and the Call-ID, both holding the cookie; the Via comes
    first, well within the snap length."""
    return data.startswith(b"SIP/2.0 ") and hex8(c) in data


def _wsd_reply(data: bytes, c: int, cut: bool) -> bool:
    """ProbeMatches relate to our MessageID. The SOAP envelope's namespaces often push RelatesTo
    past the receive snap length: a reply cut before any RelatesTo is taken as one that
    nothing contradicts, like the protocols that echo nothing."""
    if not data.startswith(b"<?xml") and b"Envelope" not in data[:200]:
        return False
    return hex8(c) in data or (cut and b"RelatesTo" not in data)


def _rpc_reply(data: bytes, c: int, cut: bool) -> bool:
    """ONC RPC: our xid, message type REPLY (1)."""
    return len(data) >= 12 and data[:4] == u32(c) and data[4:8] == b"\0\0\0\1"


def _memcached_reply(data: bytes, c: int, cut: bool) -> bool:
    """The UDP frame header echoes the request ID; a text reply follows."""
    return len(data) > 8 and data[:2] == u16(c)


def _coap_reply(data: bytes, c: int, cut: bool) -> bool:
    """A response carrying our token (piggybacked ACK or separate), or a Reset of our message
    ID (a CoAP stack that would not serve the request)."""
    if len(data) < 4 or data[0] >> 6 != 1:
        return False
    kind, tkl = data[0] >> 4 & 3, data[0] & 0x0F
    if kind == 3:
        return data[2:4] == u16(c)
    return tkl == 4 and data[1] >> 5 in (2, 4, 5) and data[4:8] == u32(c)


def _openvpn_reply(data: bytes, c: int, cut: bool) -> bool:
    """P_CONTROL_HARD_RESET_SERVER_V2 acknowledging our session ID (the remote session ID after
    its own session ID and ack array)."""
    return len(data) >= 18 and data[0] >> 3 == 8 and u64(c) in data[9:80]


# -- the requests ---------------------------------------------------------------------------------

_DNS = b"\0\0\x01\0\0\x01\0\0\0\0\0\0" + dns.name(b"version", b"bind") + b"\0\x10\0\x03"  # RD; CH TXT
_MDNS = b"\0\0\0\0\0\x01\0\0\0\0\0\0" + dns.name(b"_services", b"_dns-sd", b"_udp", b"local") + b"\0\x0c\0\x01"
# Node status ("*" padded with NULs, first-level encoded: each nibble + 'A'), NBSTAT IN.
_NBNS = (b"\0\0\0\0\0\x01\0\0\0\0\0\0" + b"\x20" + b"CK" + b"A" * 30 + b"\0" + b"\0\x21\0\x01")
# LI 0, version 4, mode 3 (client); transmit timestamp at 40 carries the cookie.
_NTP = b"\x23" + b"\0" * 47
# SNMPv3 engine discovery (RFC 3414 section 4): no user, no community. An agent answers it with
# a Report (usmStatsUnknownEngineIDs) whatever communities or users it has, v3-only ones too,
# where a v2c "public" request is dropped by any agent with another community; only an agent
# with no v3 at all stays silent. msgID holds the cookie and comes back first in the Report.
_SNMP = tlv(0x30, tlv(0x02, b"\x03")  # msgVersion 3
            + tlv(0x30, tlv(0x02, b"\0" * 4) + tlv(0x02, b"\x00\xff\xe3")  # msgID, msgMaxSize 65507
                  + tlv(0x04, b"\x04") + tlv(0x02, b"\x03"))  # flags: reportable; USM
            + tlv(0x04, tlv(0x30, tlv(0x04, b"") + tlv(0x02, b"\0") * 2 + tlv(0x04, b"") * 3))  # empty USM
            + tlv(0x30, tlv(0x04, b"") * 2  # contextEngineID, contextName
                  + tlv(0xA0, tlv(0x02, b"\0") * 3 + tlv(0x30, b""))))  # GetRequest of nothing
_SNMP_ID = _SNMP.index(b"\x02\x04\0\0\0\0") + 2
_SSDP = (b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n"
         b"MX: 1\r\nST: upnp:rootdevice\r\n\r\n")  # one reply per device; ssdp:all brings one per service
_TFTP = b"\0\x01" + b"q7Zr2xKd.bin\0" + b"octet\0"  # RRQ of a name no server holds


def _ike() -> bytes:
    """IKEv2 IKE_SA_INIT: SA (AES-CBC-256, HMAC-SHA2-256 PRF and integrity, MODP 2048), KE and
    nonce. A responder answers it, or refuses it with a notify; both begin with our SPI."""
    transforms = [bytes.fromhex("0300000c 01 00 000c 800e0100"), bytes.fromhex("03000008 02 00 0005"),
                  bytes.fromhex("03000008 03 00 000c"), bytes.fromhex("00000008 04 00 000e")]
    proposal = b"".join(transforms)
    proposal = bytes((0, 0)) + (8 + len(proposal)).to_bytes(2, "big") + b"\x01\x01\x00\x04" + proposal
    sa = b"\x22\x00" + (4 + len(proposal)).to_bytes(2, "big") + proposal  # next: KE (34)
    ke = b"\x28\x00" + (8 + 256).to_bytes(2, "big") + b"\x00\x0e\x00\x00" + b"\x5a" * 256  # next: Nonce (40)
    nonce = b"\x00\x00" + (4 + 32).to_bytes(2, "big") + bytes(range(32))
    body = sa + ke + nonce
    # SPIi (cookie), SPIr 0, next payload SA (33), version 2.0, IKE_SA_INIT (34), initiator, message ID 0
    return b"\0" * 16 + b"\x21\x20\x22\x08" + b"\0" * 4 + (28 + len(body)).to_bytes(4, "big") + body


_SIP_COOKIE = b"%08x" % 0
# rport (RFC 3581): the response goes back to the port the request came from, not to 5060.
_SIP = (b"OPTIONS sip:netscand@nm.invalid SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP nm.invalid;branch=z9hG4bK" + _SIP_COOKIE + b";rport\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:netscand@nm.invalid>;tag=6e7364\r\n"
        b"To: <sip:netscand@nm.invalid>\r\nCall-ID: " + _SIP_COOKIE + b"@nm.invalid\r\n"
        b"CSeq: 1 OPTIONS\r\nContact: <sip:netscand@nm.invalid>\r\nAccept: application/sdp\r\n"
        b"Content-Length: 0\r\n\r\n")
_SIP_AT = (_SIP.index(b"z9hG4bK") + 7, _SIP.index(b"Call-ID: ") + 9)
_WSD = (b'<?xml version="1.0" encoding="utf-8"?>'
        b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" '
        b'xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        b'xmlns:wsd="http://schemas.xmlsoap.org/ws/2005/04/discovery"><soap:Header>'
        b"<wsa:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To>"
        b"<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</wsa:Action>"
        b"<wsa:MessageID>urn:uuid:00000000-6e73-4d00-8000-6e6574736361</wsa:MessageID>"
        b"</soap:Header><soap:Body><wsd:Probe/></soap:Body></soap:Envelope>")
_WSD_AT = _WSD.index(b"urn:uuid:") + 9
# NULL, not DUMP: DUMP's reply grows by ~20 bytes per registered program (an amplifier to aim).
_PORTMAP = (b"\0" * 4 + b"\0\0\0\0" + b"\0\0\0\x02" + (100000).to_bytes(4, "big")  # xid, CALL, RPC v2
            + b"\0\0\0\x02" + b"\0\0\0\0" + b"\0" * 16)  # portmapper v2 NULL; AUTH_NULL cred, verf
_MEMCACHED = b"\0\0\0\0\0\x01\0\0" + b"version\r\n"  # request ID, sequence 0 of 1 datagram
# Version 1, confirmable, token of 4 bytes; GET; message ID; token; Uri-Path ".well-known", "core".
_COAP = b"\x44\x01\0\0" + b"\0" * 4 + b"\xbb.well-known" + b"\x04core"
_OPENVPN = b"\x38" + b"\0" * 8 + b"\0" + b"\0" * 4  # HARD_RESET_CLIENT_V2, session ID, no acks, packet 0

PAYLOADS: dict[int, Payload] = {
    53: Payload("dns", _DNS, ((0, u16),), _dns_reply),
    69: Payload("tftp", _TFTP, (), _tftp_reply, echoes=False, other_port=True),
    111: Payload("portmapper", _PORTMAP, ((0, u32),), _rpc_reply),
    123: Payload("ntp", _NTP, ((40, u64),), _ntp_reply),
    137: Payload("netbios-ns", _NBNS, ((0, u16),), _dns_reply),
    161: Payload("snmp", _SNMP, ((_SNMP_ID, snmp_id),), _snmp_reply),
    500: Payload("ike", _ike(), ((0, u64),), _ike_reply),
    1194: Payload("openvpn", _OPENVPN, ((1, u64),), _openvpn_reply),
    1900: Payload("ssdp", _SSDP, (), _any_reply, echoes=False),
    3702: Payload("ws-discovery", _WSD, ((_WSD_AT, hex8),), _wsd_reply),
    5060: Payload("sip", _SIP, tuple((at, hex8) for at in _SIP_AT), _sip_reply),
    5353: Payload("mdns", _MDNS, ((0, u16),), _dns_reply),
    5683: Payload("coap", _COAP, ((2, u16), (4, u32)), _coap_reply),
    11211: Payload("memcached", _MEMCACHED, ((0, u16),), _memcached_reply),
}
EMPTY = Payload("empty", b"", (), _any_reply, echoes=False)
PAYLOAD_PORTS: tuple[int, ...] = tuple(sorted(PAYLOADS))


def payload(port: int) -> Payload:
    """What a probe of this UDP port sends, and how its reply is recognised."""
    return PAYLOADS.get(port, EMPTY)
