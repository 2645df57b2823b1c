"""NTP: a mode 6 READVAR of the system variables (ntpd's and ntpsec's "version=" names both), and
a mode 3 client request, which any NTP server answers, for when mode 6 is refused.

Mode 6 (RFC 9327, formerly RFC 1305 appendix B): a 12-byte header (flags, opcode, sequence,
status, association, offset, count) and `count` bytes of "name=value" text. Mode 3/4 (RFC 5905):
the 48-byte packet; a server copies our transmit timestamp into its origin timestamp.
"""

from __future__ import annotations

import re
import struct

from netscand.profiling.services.base import ServiceInfo, cpe, os_hint, printable, token

name = "ntp"
ports = frozenset({123})
any_source_port = False

_CONTROL = struct.Struct("!BBHHHHH")
_READVAR = 2
_RESPONSE, _ERROR, _OPCODE = 0x80, 0x40, 0x1F
_CLIENT = 0xE3  # LI 3 (unsynchronised), version 4, mode 3
_VERSION = re.compile(rb'version="([^"]{1,200})"')
_SYSTEM = re.compile(rb'system="([^"]{1,100})"')
_NTPSEC = re.compile(r"ntpsec-(\S+)")
_NTPD = re.compile(r"ntpd (\d+\.\d+\.\d+)(p\d+)?")


def requests(ip: str, ident: int) -> tuple[bytes, ...]:
    control = _CONTROL.pack(0x16, _READVAR, ident, 0, 0, 0, 0)  # version 2, mode 6
    client = bytes((_CLIENT,)) + bytes(39) + _transmit(ident)
    return control, client


def _transmit(ident: int) -> bytes:
    return struct.pack("!II", 0x6E73_0000 | ident, ident << 16 | ident)


def parse(data: bytes, ident: int) -> ServiceInfo | None:
    if len(data) >= 48 and data[0] & 7 == 4 and data[24:32] == _transmit(ident):
        return ServiceInfo("ntp", extra={"stratum": data[1], "ntp_version": data[0] >> 3 & 7})
    if len(data) < _CONTROL.size or data[0] & 7 != 6:
        return None
    _, op, sequence, _, _, _, count = _CONTROL.unpack_from(data)
    if sequence != ident or not op & _RESPONSE or op & _OPCODE != _READVAR:
        return None
    text = data[_CONTROL.size : _CONTROL.size + min(count, 4096)]
    if op & _ERROR:
        return ServiceInfo("ntp")
    return _from_variables(text)


def _from_variables(text: bytes) -> ServiceInfo:
    version_match = _VERSION.search(text)
    system = _SYSTEM.search(text)
    extra = os_hint(system.group(1).decode("latin-1")) if system else {}
    if system:
        extra["system"] = system.group(1).decode("latin-1")
    described = version_match.group(1).decode("latin-1") if version_match else ""
    banner = printable(described.encode("latin-1")) if described else None
    ntpsec = _NTPSEC.search(described)
    if ntpsec:
        version = token(ntpsec.group(1))
        return ServiceInfo("ntp", "ntpsec", version, cpe("ntpsec", "ntpsec", version), banner, extra)
    ntpd = _NTPD.match(described)
    if ntpd:
        release, patch = ntpd.group(1), ntpd.group(2)
        version = release + (patch or "")
        return ServiceInfo("ntp", "ntpd", version, cpe("ntp", "ntp", release, patch), banner, extra)
    return ServiceInfo("ntp", banner=banner, extra=extra)
