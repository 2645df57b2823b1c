"""Reading what the detector lab's detectors say: scanlogd's syslog lines, psad's analysis report,
and the kernel's firewall log records turned into the syslog lines psad reads.

Every parser here is total: a line that does not have the expected shape comes back as None
(the caller keeps it raw), never as an exception.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field

# scanlogd(8): saddr[:sport] to daddr [and others,] ports port[, port...][, ...], flags
# [, TOS xx][, TTL n] @HH:MM:SS -- sport, TOS and TTL only when constant during the scan.
_SCANLOGD = re.compile(
    r"(?P<src>\d{1,3}(?:\.\d{1,3}){3})(?::(?P<sport>\d{1,5}))? to (?P<dst>\d{1,3}(?:\.\d{1,3}){3})"
    r"(?P<others> and others,)? ports (?P<ports>\d{1,5}(?:, \d{1,5})*)(?P<more>, \.\.\.)?, "
    r"(?P<flags>[A-Za-z?]{8})(?:, TOS (?P<tos>[0-9a-fA-F]{2}))?(?:, TTL (?P<ttl>\d{1,3}))? "
    r"@(?P<clock>\d\d:\d\d:\d\d)", re.ASCII)
# glibc's syslog(3) datagram: "<PRI>Mmm dd hh:mm:ss TAG[pid]: message".
_SYSLOG_TAG = re.compile(r"^(?:<\d{1,3}>)?.*? scanlogd(?:\[\d+\])?: ")
_MAX_LINE = 4096  # a longer line is not scanlogd's (its buffer is far smaller)
# A /dev/kmsg stamp is a u64 of microseconds; more digits than that is not the kernel's record.
_MAX_USEC_DIGITS = 20


@dataclass(frozen=True)
class ScanlogdAlert:
    """One scanlogd line: `host` is the lab host whose scanlogd wrote it, `time` when it arrived."""
    host: str
    time: float
    source: str
    source_port: int | None
    destination: str
    other_destinations: bool
    ports: tuple[int, ...]
    more_ports: bool
    flags: str
    tos: int | None
    ttl: int | None


def scanlogd_record(host: str, arrived: float, datagram: str) -> str:
    """The line the log helper keeps for one syslog datagram: one line whatever it holds."""
    printable = "".join(c if c.isprintable() else " " for c in datagram[:_MAX_LINE])
    return f"{arrived:.3f} {host} {printable}\n"


def flood_notice(line: str) -> str | None:
    """The host of a scanlogd line saying it stops logging for a while (more than 5 scans with
    at most 20 s between them: those that follow are not logged), else None."""
    parts = line.rstrip("\n").split(" ", 2)
    if len(parts) == 3 and parts[2].endswith("scanlogd: More possible port scans follow"):
        return parts[1]
    return None


def parse_scanlogd(line: str) -> ScanlogdAlert | None:
    """A line written by scanlogd_record, or None if it is not a scanlogd alert."""
    parts = line.rstrip("\n").split(" ", 2)
    if len(parts) != 3 or len(line) > _MAX_LINE + 64:
        return None
    arrived, host, datagram = parts
    tag = _SYSLOG_TAG.match(datagram)
    found = _SCANLOGD.fullmatch(datagram[tag.end():] if tag else datagram)
    try:
        when = float(arrived)
    except ValueError:
        return None
    if found is None or not math.isfinite(when):
        return None
    return ScanlogdAlert(
        host=host, time=when, source=found["src"],
        source_port=int(found["sport"]) if found["sport"] else None,
        destination=found["dst"], other_destinations=bool(found["others"]),
        ports=tuple(int(p) for p in found["ports"].split(", ")), more_ports=bool(found["more"]),
        flags=found["flags"], tos=int(found["tos"], 16) if found["tos"] else None,
        ttl=int(found["ttl"]) if found["ttl"] else None)


def kernel_record(record: bytes, boot_epoch: float, hostname: str, wanted: str) -> str | None:
    """One /dev/kmsg record ("prio,seq,usec,flags;message") as a syslog line psad reads, if its
    message holds `wanted` (the lab's log prefix); else None."""
    head, sep, body = record.partition(b";")
    fields = head.split(b",")
    message = body.split(b"\n", 1)[0].decode(errors="replace")
    if (not sep or len(fields) < 3 or wanted not in message or not fields[2].isdigit()
            or len(fields[2]) > _MAX_USEC_DIGITS):
        return None
    usec = int(fields[2])
    try:
        stamp = time.strftime("%b %e %H:%M:%S", time.localtime(boot_epoch + usec / 1e6))
    except (OverflowError, OSError, ValueError):
        return None  # a stamp beyond the years the C library can show is not one of this boot
    return f"{stamp} {hostname} kernel: [{usec / 1e6:12.6f}] {message}\n"


@dataclass(frozen=True)
class PsadMatch:
    """A psad signature that matched packets from one source to one destination."""
    name: str
    sid: int | None
    destination: str
    count: int
    dport: int | None


@dataclass
class PsadSource:
    """What psad's analysis says of one source address."""
    source: str
    danger_level: int
    packets: int
    destinations: list[str] = field(default_factory=list)
    signatures: list[PsadMatch] = field(default_factory=list)


# Numbers bounded to 10 ASCII digits: int() of thousands of digits raises, and a longer one is
# no count psad could have made.
_SRC = re.compile(r"SRC:\s+(\S+), DL: (\d{1,10}), Dsts: \d+, Pkts: (\d{1,10})(?!\d)", re.ASCII)
_DST = re.compile(r"DST:\s+(\S+)")
_SIG = re.compile(r'Signature match: "(.*)"')
_SIG_DETAIL = re.compile(r"Count: (\d{1,10})(?!\d)(?:, DP: (\d{1,5})(?!\d))?.*?(?:Sid: (\d{1,10}))?$", re.ASCII)
_SID = re.compile(r"[0-9]{1,10}")


def parse_psad(report: str) -> dict[str, PsadSource]:
    """The "IP Status Detail" part of `psad -A`'s output, per source address."""
    sources: dict[str, PsadSource] = {}
    current: PsadSource | None = None
    destination = ""
    pending: str | None = None  # a signature's name, waiting for its detail line
    for raw in report.splitlines():
        line = raw.strip()
        if pending is not None:
            detail = _SIG_DETAIL.search(line)
            if detail and current is not None:
                current.signatures.append(PsadMatch(
                    pending, int(detail[3]) if detail[3] else None, destination, int(detail[1]),
                    int(detail[2]) if detail[2] else None))
            pending = None
            continue
        if found := _SRC.match(line):
            current = sources.setdefault(found[1], PsadSource(found[1], int(found[2]), int(found[3])))
        elif (found := _DST.match(line)) and current is not None:
            destination = found[1]
            current.destinations.append(destination)
        elif found := _SIG.match(line):
            pending = found[1]
    return sources


# Options that say what a signature is, not what the packet must look like beyond its ports.
_LABELS = {"msg", "reference", "classtype", "sid", "rev", "psad_id", "psad_dl", "psad_derived_sids"}
_OPTION = re.compile(r"(\w+)\s*(?::\s*((?:[^;\\]|\\.)*))?;")


def port_only_sids(signatures: str) -> set[int]:
    """The sids (and psad_ids) of psad signatures that any SYN to their port matches: those test
    no field a probe's shape could change, only the destination port (and "flags:S")."""
    sids: set[int] = set()
    for line in signatures.splitlines():
        head, _, body = line.partition("(")
        if not head.startswith("alert tcp") or not body.endswith(")"):
            continue
        options = {name: (value or "").strip() for name, value in _OPTION.findall(body[:-1])}
        tests = set(options) - _LABELS
        if tests <= {"flags"} and options.get("flags", "S").split(",")[0] == "S":
            sids.update(int(options[key]) for key in ("sid", "psad_id") if _SID.fullmatch(options.get(key, "")))
    return sids
