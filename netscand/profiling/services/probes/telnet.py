"""Telnet: servers open with option negotiation (IAC DO/WILL ..., RFC 854), often before any text."""

from __future__ import annotations

from netscand.profiling.services.base import ServiceInfo, printable

name = "telnet"
ports = frozenset({23, 2323})
tls = False
payload: bytes | None = None

_IAC = 0xFF
_SE, _SB, _DONT = 0xF0, 0xFA, 0xFE  # SE and SB frame subnegotiation; WILL..DONT take one option
_WILL = 0xFB


def parse(data: bytes) -> ServiceInfo | None:
    if len(data) < 3 or data[0] != _IAC or not _WILL <= data[1] <= _DONT:
        return None
    text = _strip_negotiation(data[:8192])
    return ServiceInfo("telnet", banner=printable(text), extra={"options": sorted(_options(data[:8192]))})


def _options(data: bytes) -> set[int]:
    """The option codes the server negotiated (WILL/WONT/DO/DONT <option>)."""
    return {data[i + 2] for i in range(len(data) - 2) if data[i] == _IAC and _WILL <= data[i + 1] <= _DONT}


def _strip_negotiation(data: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(data):
        if data[i] != _IAC or i + 1 >= len(data):
            out.append(data[i])
            i += 1
        elif _WILL <= data[i + 1] <= _DONT:
            i += 3
        elif data[i + 1] == _SB:
            end = data.find(bytes((_IAC, _SE)), i + 2)
            i = len(data) if end < 0 else end + 2
        else:
            i += 2
    return bytes(out)
