"""NetBIOS: a Node Status request (NBSTAT), which Windows and Samba answer with their name table.

RFC 1002 section 4.2.17 (request: the wildcard name "*", type NBSTAT, class IN) and 4.2.18 (the
response's RDATA: a count, 18-byte entries of a 15-byte name, a suffix byte and flags, then the
statistics, which begin with the adapter's MAC).
"""

from __future__ import annotations

import struct

from dpkt.netbios import NS, NS_IN, NS_NAME_CNF, NS_NAME_DRG, NS_NAME_G, NS_NBSTAT, encode_name

from netscand.profiling import dnswire
from netscand.profiling.names.base import Reply, clean_name, never_raises
from netscand.profiling.services.base import ServiceInfo

source = "netbios"
port = 137

_ENTRY = struct.Struct("!15sBH")  # name padded with spaces, suffix (the service), flags
_WORKSTATION, _SERVER = 0x00, 0x20  # the suffixes of the names a host registers for itself


def request(ip: str, ident: int) -> bytes:
    question = NS.Q(name=encode_name("*"), type=NS_NBSTAT, cls=NS_IN)
    return bytes(NS(id=ident, op=0, qd=[question]))  # op 0: a unicast query, no flags


@never_raises
def parse(data: bytes, ident: int) -> Reply | None:
    # NetBIOS name service messages are DNS messages (RFC 1002 section 4.2.1.1).
    head = dnswire.header(data)
    if head is None or not head.answers_query(ident):
        return None
    for answer in dnswire.answers(data) or ():
        if answer.rtype == NS_NBSTAT:
            return _node_status(answer.rdata(data))
    return None


def _node_status(rdata: bytes) -> Reply | None:
    if not rdata:
        return None
    count = rdata[0]
    stats = 1 + count * _ENTRY.size
    if stats > len(rdata):
        return None
    entries = [_ENTRY.unpack_from(rdata, 1 + i * _ENTRY.size) for i in range(count)]
    host = _first(entries, _WORKSTATION, group=False) or _first(entries, _SERVER, group=False)
    workgroup = _first(entries, _WORKSTATION, group=True)
    extra: dict[str, object] = {}
    if workgroup:
        extra["workgroup"] = workgroup
    mac = rdata[stats : stats + 6]
    if len(mac) == 6 and any(mac):  # all zeros: a responder that does not tell
        extra["mac"] = ":".join(f"{b:02x}" for b in mac)
    return Reply(host, ServiceInfo("netbios-ns", extra=extra))


def _first(entries: list[tuple[bytes, int, int]], suffix: int, *, group: bool) -> str | None:
    """The first usable group (or unique) name with this suffix, as clean text."""
    for raw, entry_suffix, flags in entries:
        if entry_suffix != suffix or bool(flags & NS_NAME_G) != group or flags & (NS_NAME_CNF | NS_NAME_DRG):
            continue  # another service, another kind, or a name the host may not keep
        name = clean_name(raw.decode("latin-1").rstrip(" \0"), lower=False)
        if name:
            return name
    return None
