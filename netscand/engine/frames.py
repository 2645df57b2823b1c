"""What a received frame must be before any probe reads it, and its checksum once one claims it.

The receive filter (sockets.reply_filter) lets through ARP, ICMP, TCP with ACK or RST and UDP to our
source ports: anything on the segment, and any scanned host, can send those, built however it
likes. check() reads the structure once per frame, so a frame that says more than it holds is
counted and dropped before any plan's probe sees it (each probe's answer() is total on its own
all the same: this is for the count, and so that no probe has to be trusted to get it right).

Checksums are verified only for frames a probe matched: summing costs a pass over the packet,
which foreign traffic is spared; a reply of ours that arrived damaged is dropped, as the kernel
would drop it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from netscand.engine.probes import Answer, Probe
from netscand.engine.probes.arp import IPV4_OVER_ETHERNET
from netscand.engine.shm import MALFORMED
from netscand.engine.sockets import SNAPLEN

TRUNCATED, BAD_IP, BAD_TCP, BAD_ICMP_QUOTE, BAD_ARP, BAD_CHECKSUM, PARSER_ERROR = (
    MALFORMED.index(r) for r in ("truncated", "bad_ip_header", "bad_tcp_header", "bad_icmp_quote",
                                 "bad_arp", "bad_checksum", "parser_error"))

ETH = 14
_IPV4, _ARP = b"\x08\x00", b"\x08\x06"
_ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})  # they quote the datagram they are about
_FOLD = 0xFFFF  # 2**16 = 1 (mod 0xFFFF): a big-endian integer is its 16-bit words' sum, mod this


def check(frame: bytes) -> int:
    """0 when every length the frame states fits in it, else the MALFORMED code saying why."""
    n = len(frame)
    kind = frame[12:14]
    if kind == _ARP:
        if n < ETH + 28:
            return TRUNCATED
        return 0 if frame[14:20] == IPV4_OVER_ETHERNET else BAD_ARP
    if kind != _IPV4:
        return 0 if n >= ETH else TRUNCATED  # nothing a probe reads
    if n < ETH + 20:
        return TRUNCATED
    ihl = (frame[14] & 0x0F) * 4
    total = frame[16] << 8 | frame[17]
    if frame[14] >> 4 != 4 or ihl < 20 or total < ihl:
        return BAD_IP
    end = ETH + total
    if end > n:
        if n < SNAPLEN:
            return TRUNCATED
        end = n  # cut by our snap length, not by the sender: what is here must still add up
    l4 = ETH + ihl
    if l4 > end:
        return BAD_IP
    proto = frame[23]
    if proto == 6:
        if end - l4 < 20:
            return TRUNCATED
        off = (frame[l4 + 12] >> 4) * 4
        return BAD_TCP if off < 20 or l4 + off > end else 0
    if proto == 1:
        if end - l4 < 8:
            return TRUNCATED
        if frame[l4] in _ICMP_ERRORS:
            return _quote(frame, l4 + 8, end)
    if proto == 17 and end - l4 < 8:
        return TRUNCATED
    return 0


def _quote(frame: bytes, q: int, end: int) -> int:
    """An ICMP error quotes an IP header and at least 8 bytes after it (RFC 792)."""
    if end - q < 20:
        return BAD_ICMP_QUOTE
    ihl = (frame[q] & 0x0F) * 4
    if frame[q] >> 4 != 4 or ihl < 20 or q + ihl + 8 > end:
        return BAD_ICMP_QUOTE
    return 0


def checksum_ok(frame: bytes) -> bool:
    """The IPv4 header's checksum and the TCP, UDP or ICMP one, of a frame check() passed."""
    if frame[12:14] != _IPV4:
        return True  # ARP carries none
    l4 = ETH + (frame[14] & 0x0F) * 4
    if int.from_bytes(frame[ETH:l4], "big") % _FOLD:
        return False
    end = ETH + (frame[16] << 8 | frame[17])
    if end > len(frame):
        return True  # cut by our snap length: the rest is not here to sum
    data = frame[l4:end]
    total = int.from_bytes(data, "big") << (8 * (len(data) & 1))  # an odd byte is padded
    proto = frame[23]
    if proto == 1:
        return total % _FOLD == 0
    if proto not in (6, 17):
        return True
    at = l4 + (16 if proto == 6 else 6)
    field = frame[at] << 8 | frame[at + 1]
    if proto == 17 and field == 0:
        return True  # a UDP sender may send no checksum (RFC 768)
    pseudo = int.from_bytes(frame[26:34], "big") + proto + (end - l4)
    if (pseudo + total) % _FOLD == 0:
        return True
    # Checksum offload (loopback; veth and virtio with tx offload on): the sending kernel left
    # the field holding the pseudo-header's sum for hardware that never came. Damage elsewhere
    # does not make a field equal that.
    return (field - pseudo) % _FOLD == 0


class HasProbe(Protocol):
    probe: Probe


P = TypeVar("P", bound=HasProbe)


def take(frame: bytes, plans: Iterable[P], counts: list[int]) -> tuple[P, Answer] | None:
    """The plan a frame answers and what it says; None for anyone else's frame, and for a
    malformed one, counted in counts[reason]."""
    reason = check(frame)
    if reason:
        counts[reason] += 1
        return None
    for plan in plans:
        answer = plan.probe.answer(frame)
        if answer is not None:
            if checksum_ok(frame):
                return plan, answer
            counts[BAD_CHECKSUM] += 1
            return None
    return None
