"""RDP: an X.224 Connection Request carrying RDP_NEG_REQ ([MS-RDPBCGR] 2.2.1.1); the server's
X.224 Connection Confirm (with RDP_NEG_RSP or RDP_NEG_FAILURE, 2.2.1.2) names RDP.
"""

from __future__ import annotations

import struct

from netscand.profiling.services.base import ServiceInfo

name = "rdp"
ports = frozenset({3389})
tls = False

_PROTOCOL_SSL, _PROTOCOL_HYBRID = 0x1, 0x2
_NEG_REQ = struct.pack("<BBHI", 0x01, 0, 8, _PROTOCOL_SSL | _PROTOCOL_HYBRID)
_X224_CR = bytes((6 + len(_NEG_REQ), 0xE0)) + b"\0\0\0\0\0" + _NEG_REQ  # LI, CR code, dst/src ref, class 0
payload: bytes | None = struct.pack("!BBH", 3, 0, 4 + len(_X224_CR)) + _X224_CR  # TPKT version 3

_X224_CC = 0xD0
_NEG_RSP, _NEG_FAILURE = 0x02, 0x03
_PROTOCOLS = {0: "rdp", 1: "tls", 2: "credssp", 4: "rdstls", 8: "credssp-early-auth"}


def parse(data: bytes) -> ServiceInfo | None:
    if len(data) < 11 or data[0] != 3 or data[1] != 0:
        return None
    length = struct.unpack("!H", data[2:4])[0]
    if not 11 <= length <= len(data) or data[5] != _X224_CC or data[4] + 5 > length:
        return None
    extra: dict[str, object] = {}
    neg = data[11:length]
    if len(neg) >= 8:
        kind, value = neg[0], struct.unpack("<I", neg[4:8])[0]
        if kind == _NEG_RSP:
            extra["protocol"] = _PROTOCOLS.get(value, hex(value))
        elif kind == _NEG_FAILURE:
            extra["failure"] = value
    return ServiceInfo("rdp", extra=extra)
