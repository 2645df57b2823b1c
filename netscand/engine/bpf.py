"""The receive sockets' classic BPF filter, built from what each probe type says its replies are.

Each probe module declares its replies as clauses (ProbeType.replies): short instruction lists
that jump to "accept" for a frame of theirs and to "next" for any other. The filter is every
registered clause in turn (each one once, however many probe types share it), then reject: the
kernel drops everything else before a worker is woken for it.

Rows are (code, jt, jf, k); jt and jf (and k, for JA) are relative jumps or the labels
"accept" and "next". A clause must not assume any register holds anything when it starts.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

Row = tuple[int, int | str, int | str, int | str]
Clause = tuple[Row, ...]

LD_H, LD_B, LDX_MSH, LD_HX, LD_BX = 0x28, 0x30, 0xB1, 0x48, 0x50
JA, JEQ, JGE, JGT, JSET, RET = 0x05, 0x15, 0x35, 0x25, 0x45, 0x06
AND = 0x54  # A &= k
ETH = 14
_FRAGMENT = 0x1FFF  # offset bits: a later fragment has no transport header to read
JUMP_MAX = 0xFF  # jt and jf are one byte: a program whose first rows must jump past this is unbuildable
ACCEPT: Clause = ((JA, 0, 0, "accept"),)


def ipv4(proto: int) -> Clause:
    """The head of a clause: an unfragmented IPv4 packet of this protocol, else next."""
    return ((LD_H, 0, 0, 12), (JEQ, 0, "next", 0x0800), (LD_H, 0, 0, 20), (JSET, "next", 0, _FRAGMENT),
            (LD_B, 0, 0, 23), (JEQ, 0, "next", proto))


# Any unfragmented ICMP: errors quoting a probe and echo replies alike (the probes' parsers tell).
ANY_ICMP: Clause = ipv4(1) + ACCEPT


def to_ports(lo: int, hi: int) -> Clause:
    """After ipv4(): the destination port (TCP's or UDP's) is within [lo, hi], else next.
    Leaves X holding the IP header's length."""
    return ((LDX_MSH, 0, 0, ETH), (LD_HX, 0, 0, ETH + 2), (JGE, 0, "next", lo), (JGT, "next", 0, hi))


def reply_filter(clauses: Iterable[Clause], snaplen: int) -> bytes:
    """The sock_filter[] program accepting (the first `snaplen` bytes of) what any clause does."""
    unique = list(dict.fromkeys(clauses))
    rows: list[tuple[str, int, int | str, int | str, int | str]] = []
    for i, clause in enumerate(unique):
        nxt = f"c{i + 1}" if i + 1 < len(unique) else "reject"

        def resolve(v: int | str, nxt: str = nxt) -> int | str:
            return nxt if v == "next" else v

        for j, (code, jt, jf, k) in enumerate(clause):
            rows.append((f"c{i}" if j == 0 else "", code, resolve(jt), resolve(jf), resolve(k)))
    rows += [("accept", RET, 0, 0, snaplen), ("reject", RET, 0, 0, 0)]
    return _assemble(rows)


def _assemble(program: list[tuple[str, int, int | str, int | str, int | str]]) -> bytes:
    """Resolve labels into relative jumps; pack as struct sock_filter[]. ValueError when a
    conditional jump is too long for its byte (the clauses add up to too many rows)."""
    labels = {row[0]: i for i, row in enumerate(program) if row[0]}
    out = []
    for i, (_, code, *fields) in enumerate(program):
        jt, jf, k = (labels[v] - i - 1 if isinstance(v, str) else v for v in fields)
        if not (0 <= jt <= JUMP_MAX and 0 <= jf <= JUMP_MAX):
            raise ValueError(f"receive filter of {len(program)} rows: row {i} jumps {max(jt, jf)} rows, "
                             f"past BPF's {JUMP_MAX}")
        out.append(struct.pack("HBBI", code, jt, jf, k))
    return b"".join(out)
