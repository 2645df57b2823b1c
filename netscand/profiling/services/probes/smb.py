"""SMB: an SMB2 NEGOTIATE ([MS-SMB2] 2.2.3) over direct TCP; the NEGOTIATE response names the dialect.

Only dialects 2.0.2 to 3.0.2 are offered: 3.1.1 requires negotiate contexts, and the dialect is
all this probe reports (the product, Samba or Windows, needs an authenticated session to tell).
"""

from __future__ import annotations

import struct

from netscand.profiling.services.base import ServiceInfo

name = "smb"
ports = frozenset({445})
tls = False

_DIALECTS = {0x0202: "2.0.2", 0x0210: "2.1", 0x0300: "3.0", 0x0302: "3.0.2", 0x0311: "3.1.1", 0x02FF: "2.x"}
_OFFERED = (0x0202, 0x0210, 0x0300, 0x0302)
_SMB2 = b"\xfeSMB"
_SMB1 = b"\xffSMB"
_NEGOTIATE = 0


def _negotiate() -> bytes:
    # Header: protocol id, structure size 64, credit charge, status, command, credits, flags,
    # next command, message id, process id, tree id, session id, signature.
    header = _SMB2 + struct.pack("<HHIHHIIQIIQ16s", 64, 0, 0, _NEGOTIATE, 1, 0, 0, 0, 0, 0, 0, b"")
    # Body: structure size 36, dialect count, security mode (signing enabled), capabilities, client GUID.
    body = struct.pack("<HHHHI16sQ", 36, len(_OFFERED), 1, 0, 0, b"netscand-smb-gid", 0)
    message = header + body + b"".join(struct.pack("<H", d) for d in _OFFERED)
    return struct.pack("!I", len(message)) + message  # direct-TCP header: zero byte, 24-bit length


payload: bytes | None = _negotiate()


def parse(data: bytes) -> ServiceInfo | None:
    if len(data) < 8 or data[0] != 0:
        return None
    message = data[4 : 4 + int.from_bytes(data[1:4], "big")]
    if message.startswith(_SMB1):
        return ServiceInfo("smb", extra={"dialect": "1"})
    if not message.startswith(_SMB2) or len(message) < 64 + 6:
        return None
    command = struct.unpack("<H", message[12:14])[0]
    if command != _NEGOTIATE:
        return None
    dialect = struct.unpack("<H", message[68:70])[0]
    extra: dict[str, object] = {"dialect": _DIALECTS.get(dialect, hex(dialect))}
    return ServiceInfo("smb", extra=extra)
