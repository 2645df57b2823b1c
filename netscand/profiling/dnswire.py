"""The DNS message format (RFC 1035 section 4), read from a stranger's bytes at a bounded cost.

mDNS, NetBIOS name service and the DNS service probe all read answers in this format. dpkt's
decoder follows each name's compression pointers as far as they lead and reads every record a
header claims, so one 64 KiB datagram holding a long chain of pointers, and many records
pointing at its end, costs seconds. Here a name costs at most MAX_STEPS labels and pointers,
a message claiming more than MAX_RECORDS questions is refused (answers are found after the
questions, so skipping some would read a question as an answer), only the first MAX_RECORDS
answers are read, and nothing raises: malformed means None.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

NAME_MAX = 255  # RFC 1035 section 3.1: a name's wire form, length bytes included
MAX_STEPS = 128  # labels plus pointers in one name: a 255-byte name has at most 127 labels
MAX_RECORDS = 16  # questions or answers read from one message; the rest is not looked at
QR = 0x8000  # the header flag of a response
OPCODE_RCODE = 0x780F  # the flag bits that must be 0 in a useful answer: opcode (query) and rcode
_HEADER = struct.Struct("!6H")  # id, flags, QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT
_RECORD = struct.Struct("!HHIH")  # type, class, TTL, RDLENGTH
_QUESTION_TAIL = 4  # type and class after a question's name


@dataclass(frozen=True)
class Header:
    ident: int
    flags: int
    questions: int
    answers: int

    def answers_query(self, ident: int) -> bool:
        """A response to query `ident`, no error: the only kind of message worth reading on."""
        return self.ident == ident and bool(self.flags & QR) and not self.flags & OPCODE_RCODE


@dataclass(frozen=True)
class Record:
    rtype: int
    start: int  # where the RDATA starts in the message (names in it may point anywhere before)
    end: int

    def rdata(self, message: bytes) -> bytes:
        return message[self.start : self.end]


def header(message: bytes) -> Header | None:
    if len(message) < _HEADER.size:
        return None
    ident, flags, questions, answers, _, _ = _HEADER.unpack_from(message)
    return Header(ident, flags, questions, answers)


def answers(message: bytes) -> list[Record] | None:
    """The first MAX_RECORDS answer records, or None when they (or the questions) don't fit."""
    head = header(message)
    if head is None or head.questions > MAX_RECORDS:
        return None
    offset = _HEADER.size
    for _ in range(head.questions):
        end = skip_name(message, offset)
        if end is None or end + _QUESTION_TAIL > len(message):
            return None
        offset = end + _QUESTION_TAIL
    records = []
    for _ in range(min(head.answers, MAX_RECORDS)):
        end = skip_name(message, offset)
        if end is None or end + _RECORD.size > len(message):
            return None
        rtype, _, _, rdlength = _RECORD.unpack_from(message, end)
        start = end + _RECORD.size
        offset = start + rdlength
        if offset > len(message):
            return None
        records.append(Record(rtype, start, offset))
    return records


def skip_name(message: bytes, offset: int) -> int | None:
    """The offset just past the name at `offset` (a pointer ends it), or None if it is cut short."""
    for _ in range(MAX_STEPS):
        if offset >= len(message):
            return None
        size = message[offset]
        if size == 0:
            return offset + 1
        if size & 0xC0 == 0xC0:
            return offset + 2 if offset + 2 <= len(message) else None
        if size & 0xC0:
            return None  # 0x40 and 0x80: label types RFC 6891 retired
        offset += 1 + size
    return None


def read_name(message: bytes, offset: int) -> list[bytes] | None:
    """The labels of the name at `offset`, following compression pointers, or None if malformed.

    A pointer must lead to an earlier offset than the name part it ends (as dpkt requires), so
    pointers can't loop; MAX_STEPS and NAME_MAX bound the work besides.
    """
    labels: list[bytes] = []
    wire = 1  # the root label's length byte
    start = offset
    for _ in range(MAX_STEPS):
        if offset >= len(message):
            return None
        size = message[offset]
        if size == 0:
            return labels
        if size & 0xC0 == 0xC0:
            if offset + 2 > len(message):
                return None
            target = int.from_bytes(message[offset : offset + 2], "big") & 0x3FFF
            if target >= start:
                return None  # forward, or to itself: not a prior occurrence
            start = offset = target
            continue
        if size & 0xC0 or offset + 1 + size > len(message):
            return None
        wire += 1 + size
        if wire > NAME_MAX:
            return None
        labels.append(message[offset + 1 : offset + 1 + size])
        offset += 1 + size
    return None
