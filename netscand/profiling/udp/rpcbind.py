"""ONC RPC portmapper (rpcbind): the NULL procedure of program 100000 version 2 (RFC 5531, RFC
1833). Any reply with our xid is an RPC service; which implementation it is, it does not say."""

from __future__ import annotations

import struct

from netscand.profiling.services.base import ServiceInfo

name = "rpcbind"
ports = frozenset({111})
any_source_port = False

_CALL = struct.Struct("!10I")
_REPLY = struct.Struct("!III")
_PORTMAPPER, _VERSION, _NULL = 100000, 2, 0
_MSG_CALL, _MSG_REPLY, _RPC_VERSION = 0, 1, 2


def requests(ip: str, ident: int) -> tuple[bytes, ...]:
    # xid, CALL, RPC version 2, program, version, procedure, AUTH_NONE credentials and verifier
    return (_CALL.pack(ident, _MSG_CALL, _RPC_VERSION, _PORTMAPPER, _VERSION, _NULL, 0, 0, 0, 0),)


def parse(data: bytes, ident: int) -> ServiceInfo | None:
    if len(data) < _REPLY.size:
        return None
    xid, kind, status = _REPLY.unpack_from(data)
    if xid != ident or kind != _MSG_REPLY or status > 1:  # 0 accepted, 1 denied: both RPC
        return None
    return ServiceInfo("rpcbind", extra={"accepted": status == 0})
