"""What a scan found, accumulated from engine records, and its result document.

Open ports arrive one by one; closed and filtered ports arrive as per-shard tallies, plus the
ports themselves when a host has few of them in a shard. A port listed once per state is shown
when the whole host has few ports in that state; otherwise it is counted under `not_shown`, as
nmap does with its "Not shown: 995 closed ports".

A host that answers SYN-ACK on (nearly) every port is a tarpit (LaBrea, a SYN proxy): its "open"
ports are counted, never listed, fingerprinted past OPEN_CAP, guessed at or profiled. A host
that answers (nearly) every UDP port is bounded the same way: its UDP open ports are counted
(under not_shown_udp); it is no tarpit, whose SYN-ACKs and OS guess are forged.

Each protocol's port scan keeps its states apart (PortStates); UDP adds "open|filtered" (no
answer after the retries) and "filtered" (an ICMP unreachable other than the port's).

What the probes cost and earned (coverage.py) comes on each shard's R_DONE (the scan's counts)
and on an R_COVER per host that answered in a shard (a device's counts), each kept by shard so a
shard run twice after a worker restart counts once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from netscand.engine import coverage as engine_coverage
from netscand.engine.coverage import Counts
from netscand.engine.shm import (
    R_COVER,
    R_DONE,
    R_HOST,
    R_PORT,
    R_TALLY,
    S_CLOSED,
    S_OPEN,
    S_UNREACH,
    Result,
)
from netscand.profiling.osguess import Guess, guess
from netscand.profiling.services import ServiceInfo
from netscand.profiling.vendor import vendor
from netscand.scan import coverage
from netscand.scan.ports import service_name

LIST_LIMIT = 25
# Open ports a host may have before it counts as answering every port. Real servers listen on
# tens of TCP ports, a few hundred at the very most (a busy Kubernetes node's NodePorts); past
# 1024 a host is a tarpit, and the fingerprints kept (about 100 bytes each) and the detection
# connections later made stay bounded per host.
OPEN_CAP = 1024
# Once a host was probed on at least TARPIT_SAMPLE ports, answering open on TARPIT_PERCENT % of
# them or more makes it a tarpit. A real server never comes close: the busiest hosts open a few
# dozen of the 100 most used ports (quick), and fewer of the next 900 (normal); even a honeypot
# that emulates every common service leaves most of the top 1000 closed. A sample under 100 ports
# (a custom scan of a few) proves nothing, so such a host is judged by OPEN_CAP alone.
TARPIT_SAMPLE = 100
TARPIT_PERCENT = 90


def well_known_service(port: int) -> str | None:
    """The registered name of a port, in the spec's capitals ("SSH", "HTTPS")."""
    name = service_name(port)
    return name.upper() if name else None


# What a device's `certificates` tell of each (profiling/services/probes/tls.py certificate_fields).
CERTIFICATE_FIELDS = ("sha256", "subject", "issuer", "not_after")


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02X}" for b in mac)


@dataclass
class Fingerprint:
    """How the host's stack answered a SYN on an open port: the OS guess reads this later."""

    ttl: int
    win: int
    ipid: int
    opts: bytes


# What an engine state is called in each protocol's result. TCP calls an ICMP unreachable
# filtered, as it does silence; UDP tells them apart: silence after every retry may be an open
# port that ignored the payload, or a filter, so it is "open|filtered" (nmap's word).
SILENT_STATE = {"tcp": "filtered", "udp": "open|filtered"}
UNREACH_APART = frozenset({"udp"})
# An open port found by a query's own answer (identification's), not by the scan's probe: it has
# no stack fingerprint, and needs none (the OS guess reads TCP's only).
NO_FINGERPRINT = Fingerprint(0, 0, 0, b"")


@dataclass(slots=True)
class PortStates:
    """One protocol's port scan of a host: open ports arrive one by one; closed (and, for UDP,
    unreachable) ones as per-shard tallies, listed too when few; the other ports probed were
    silent. Listed sets grow to LIST_LIMIT + 1 at most, open ones to OPEN_CAP."""

    protocol: str = "tcp"
    probed: int = 0  # set when its plan is written, or when the host first answers one
    open: dict[int, Fingerprint] = field(default_factory=dict)  # at most OPEN_CAP
    closed: set[int] = field(default_factory=set)
    unreachable: set[int] = field(default_factory=set)  # UDP: an ICMP unreachable, not the port's
    silent: set[int] = field(default_factory=set)
    tallies: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)  # (closed, unreachable)
    covered: dict[tuple[int, int], Counts] = field(default_factory=dict)  # by (plan, shard): R_COVER's
    # Open ports past OPEN_CAP: a bitmap (8 KiB), so a port reported twice is counted once.
    open_past_cap: bytearray | None = None
    open_past_cap_count: int = 0
    # Silent ports a confirmation (identification asking them again) found closed or filtered:
    # remembered apart from the capped lists, so a port confirmed twice counts once.
    confirmed: dict[int, str] = field(default_factory=dict)  # port -> "closed" | "filtered"

    @property
    def open_count(self) -> int:
        return len(self.open) + self.open_past_cap_count

    @property
    def closed_count(self) -> int:
        return sum(c for c, _ in self.tallies.values()) + self._confirmed_as("closed")

    @property
    def unreachable_count(self) -> int:
        return sum(u for _, u in self.tallies.values()) + self._confirmed_as("filtered")

    def _confirmed_as(self, state: str) -> int:
        return sum(1 for s in self.confirmed.values() if s == state)

    @property
    def silent_count(self) -> int:
        # Shards where the host answered nothing are not reported: their ports are silent too.
        return max(0, self.probed - self.open_count - self.closed_count - self.unreachable_count)

    @property
    def tarpit(self) -> bool:
        """Answers (nearly) every port: its open ports counted but not listed. Open ports only
        ever grow, so once true it stays true."""
        return _tarpit(self.open_count, self.probed)

    def coverage(self, retries: int) -> Counts:
        """Its probes' counts: the shards it answered in report them; in the others (none are
        reported) each of its ports went 1 + retries times unanswered. A shard's record counts
        its ports in it once each, plus their retries (sent - retried)."""
        total = Counts()
        for counts in self.covered.values():
            total = total.plus(counts)
        unreported = max(0, self.probed - (total.sent - total.retried))
        return total.plus(Counts(unreported * (1 + retries), 0, unreported * retries, 0))

    def record(self, r: Result) -> None:
        """An R_PORT, R_TALLY or R_COVER of this protocol's scan."""
        if r.kind == R_COVER:
            self.covered[(r.plan_gen, r.shard)] = engine_coverage.unpack(r.opts)
        elif r.kind == R_TALLY:
            # Keyed by shard, so a shard run twice after a worker restart counts once. A TCP
            # tally's unanswered count covers its unreachable ports.
            self.tallies[(r.plan_gen, r.shard)] = (r.a, r.win if self.protocol in UNREACH_APART else 0)
        elif r.state == S_OPEN:
            self.add_open(r.port, Fingerprint(r.ttl, r.win, r.ipid, r.opts))
        elif r.state == S_CLOSED:
            _add_listable(self.closed, r.port)
        elif r.state == S_UNREACH and self.protocol in UNREACH_APART:
            _add_listable(self.unreachable, r.port)
        else:
            _add_listable(self.silent, r.port)

    def answered(self, port: int) -> None:
        """A probed port the scan heard nothing from answered a query of its own (UDP
        identification): it is open, and leaves the silent ports. One the scan found closed or
        filtered (or a confirmation did) is left as found (the device lists it open: _listing)."""
        if port not in self.closed and port not in self.unreachable and port not in self.confirmed:
            self.silent.discard(port)
            self.add_open(port, NO_FINGERPRINT)

    def confirm(self, port: int, state: str) -> None:
        """A port the scan heard nothing from answered a confirmation with port unreachable
        ("closed") or another ICMP error ("filtered"): it leaves the silent ports. Idempotent: a
        port known open, closed or filtered stays as it is, and one confirmed is confirmed once.
        When the closed or filtered list is cut (counted), an unlisted port asked again may have
        been counted there already: moves stop once no silent port is left to move, so listed +
        not shown stays the ports probed."""
        known = port in self.open or port in self.closed or port in self.unreachable or port in self.confirmed
        if known or self.silent_count == 0:
            return
        self.confirmed[port] = state
        self.silent.discard(port)
        _add_listable(self.closed if state == "closed" else self.unreachable, port)

    def silent_ports(self, probed: Collection[int]) -> set[int]:
        """The probed ports that may be silent: the listed ones when every silent port is listed;
        past that (the ICMP rate limit silences most closed ports) the probed ports not listed
        open, closed or filtered, nor confirmed."""
        if len(self.silent) >= self.silent_count:
            return set(self.silent)
        return set(probed) - self.open.keys() - self.closed - self.unreachable - self.confirmed.keys()

    @property
    def icmp_limited(self) -> bool:
        """It does send port unreachables, yet left more ports silent than it answered closed:
        Linux sends about one a second (icmp_ratelimit), so most of its silent ports are likely
        closed. A few silent ports beside many closed ones are a firewall's drops, not a limit."""
        return 0 < self.closed_count < self.silent_count

    def add_open(self, port: int, fp: Fingerprint) -> None:
        if port in self.open:
            return
        if len(self.open) < OPEN_CAP:
            self.open[port] = fp
            return
        if self.open_past_cap is None:
            self.open_past_cap = bytearray(8192)
        byte, bit = divmod(port, 8)
        if not self.open_past_cap[byte] >> bit & 1:
            self.open_past_cap[byte] |= 1 << bit
            self.open_past_cap_count += 1

    @property
    def shown_open(self) -> int:
        """Open ports a device lists: a tarpit's are counted instead."""
        return 0 if self.tarpit else self.open_count


@dataclass(slots=True)
class Host:
    ip: int
    mac: bytes | None = None
    up: bool = False
    timed_out: bool = False
    hostname: str | None = None  # the best of `names`
    names: dict[str, str] = field(default_factory=dict)  # by source: "dns", "mdns", "netbios", "snmp"
    evidence: list[str] = field(default_factory=list)  # text naming the OS, e.g. SNMP's sysDescr
    # UDP port -> what answers there: a name query's answer, or service detection's.
    udp: dict[int, ServiceInfo] = field(default_factory=dict)
    services: dict[int, ServiceInfo] = field(default_factory=dict)  # TCP port -> detection's finding
    # The port scans' states by protocol ("tcp", "udp"), made when a scan first probes or hears
    # from the host: most hosts of a scan never see a UDP plan.
    scans: dict[str, PortStates] = field(default_factory=dict)

    def states(self, protocol: str) -> PortStates:
        found = self.scans.get(protocol)
        if found is None:
            found = self.scans[protocol] = PortStates(protocol)
        return found

    @property
    def tcp(self) -> PortStates:
        return self.states("tcp")

    @property
    def tarpit(self) -> bool:
        """Its SYN-ACKs answer (nearly) every port: they come from whatever forges them, so it
        gets no OS guess and no service detection."""
        return "tcp" in self.scans and self.scans["tcp"].tarpit

    @property
    def shown_open(self) -> int:
        return sum(s.shown_open for s in self.scans.values())

    def record(self, r: Result, protocol: str, nports: int) -> None:
        """What an engine answer about this host (R_HOST, R_PORT, R_TALLY or R_COVER) says of it;
        `nports`: the ports of the port scan plan of `protocol` it answers."""
        if r.kind == R_HOST:
            self.up, self.mac = True, r.mac
            return
        states = self.states(protocol)
        if not states.probed:
            states.probed = nports
        # A tally with only unreachables proves nothing: a router answers those for an absent host.
        if (r.kind == R_TALLY and r.a) or r.state == S_OPEN:
            self.up = True
        states.record(r)


def _tarpit(open_ports: int, probed: int) -> bool:
    return open_ports > OPEN_CAP or (probed >= TARPIT_SAMPLE and 100 * open_ports >= TARPIT_PERCENT * probed)


class ScanResult:
    def __init__(self) -> None:
        self.hosts: dict[int, Host] = {}
        self.dirty: set[int] = set()  # hosts changed since the store last saw them
        # Kept as records come in, so progress never walks (or sorts) every host that answered.
        self.up_count = 0
        self.open_ports = 0  # open ports the result lists: a tarpit's are not
        self.counts = Counts()  # every finished shard's (coverage.py)
        self.retries = 0  # the most any of its plans allows

    def host(self, ip: int) -> Host:
        h = self.hosts.get(ip)
        if h is None:
            h = self.hosts[ip] = Host(ip)
        return h

    def probed(self, ips: tuple[int, ...], nports: int, protocol: str) -> None:
        """A port scan plan of `protocol` over `ips` is written: hosts already known (found by
        ARP or a ping) learn how many ports they are probed on; the others learn it if they
        answer (see `add`)."""
        for ip in ips:
            h = self.hosts.get(ip)
            if h is not None:
                shown = h.shown_open
                h.states(protocol).probed += nports
                self.open_ports += h.shown_open - shown

    def timed_out(self, ips: tuple[int, ...]) -> None:
        """Those of `ips` that answered ran out of time; the others were never hosts."""
        for ip in ips:
            h = self.hosts.get(ip)
            if h is not None:
                h.timed_out = True

    def add(self, r: Result, nports: int, protocol: str) -> bool:
        """Record an engine answer; `nports`: the ports of the `protocol` port scan plan it
        answers, for a host it brings in. True when it shows the host up for the first time."""
        if r.kind not in (R_HOST, R_PORT, R_TALLY, R_COVER):
            return False
        self.dirty.add(r.ip)
        h = self.host(r.ip)
        was_up, shown = h.up, h.shown_open
        h.record(r, protocol, nports)
        self.open_ports += h.shown_open - shown
        self.up_count += h.up and not was_up
        return h.up and not was_up

    def shard_done(self, r: Result) -> None:
        """A shard's R_DONE (the dispatcher passes each shard's once): its counts join the scan's."""
        if r.kind == R_DONE:
            self.counts = self.counts.plus(engine_coverage.unpack(r.opts))
            self.retries = max(self.retries, r.state)

    def coverage(self) -> dict[str, Any]:
        """The result document's `coverage` (coverage.py)."""
        return coverage.scan_document(self.counts, self.retries)

    def host_coverage(self, h: Host) -> dict[str, Any]:
        """A device's `coverage`: its port scans' probes, judged with the scan's loss."""
        counts = Counts()
        for states in h.scans.values():
            counts = counts.plus(states.coverage(self.retries))
        return coverage.host_document(counts, coverage.estimated_loss(self.counts, self.retries), self.retries)

    def mark_up(self, ip: int) -> bool:
        """A ping answer; True when it shows the host up for the first time."""
        self.dirty.add(ip)
        h = self.host(ip)
        was_up, h.up = h.up, True
        self.up_count += not was_up
        return not was_up

    @property
    def up_hosts(self) -> list[Host]:
        return sorted((h for h in self.hosts.values() if h.up), key=lambda h: h.ip)

    def devices(self, profiling: bool = False) -> list[dict]:
        return [self.device(h, profiling) for h in self.up_hosts]

    def take_dirty(self, limit: int | None = None) -> list[Host]:
        """The hosts changed since the store last saw them, sorted: all, or at most `limit` of
        them with the rest left dirty. Taken by popping, so a flush costs what it takes, never
        what is left (a /8 that answers at once leaves millions)."""
        if limit is None or limit >= len(self.dirty):
            taken, self.dirty = self.dirty, set()
        else:
            taken = {self.dirty.pop() for _ in range(limit)}
        return [self.hosts[ip] for ip in sorted(taken) if ip in self.hosts and self.hosts[ip].up]

    def device(self, h: Host, profiling: bool = False) -> dict[str, Any]:
        """The result document's device; `profiling` adds what the engine's answers reveal
        without another packet: vendor from the MAC, OS guess from the SYN-ACK fingerprints."""
        tcp = _listing(h.scans.get("tcp") or PortStates("tcp"))
        # A UDP port that answered a query of its own (a name query, detection) is one entry
        # with what the scan found there.
        udp = _listing(h.scans.get("udp") or PortStates("udp"), h.udp.keys())
        ports = [_port(p, "tcp", state, h.services.get(p)) for p, state in tcp.ports]
        ports += [_port(p, "udp", state, h.udp.get(p)) for p, state in udp.ports]
        mac = mac_text(h.mac) if h.mac and any(h.mac) else None
        os = _os_guess(h) if profiling else None
        return {
            "ip": str(ipaddress.IPv4Address(h.ip)),
            "mac": mac,
            "hostname": h.hostname,
            "vendor": vendor(mac) if profiling else None,
            "os_guess": os.name if os else None,
            "ports": sorted(ports, key=lambda e: (e["port"], e["protocol"])),
            **_optional(h, os, tcp, udp),
            **({"coverage": self.host_coverage(h)} if h.scans else {}),
        }


def _add_listable(ports: set[int], port: int) -> None:
    # Closed and filtered ports are listed only when a host has at most LIST_LIMIT of them: one
    # more is enough to know they will be counted instead, whatever a hostile host answers.
    if len(ports) <= LIST_LIMIT:
        ports.add(port)


class Listing(NamedTuple):
    """One protocol's ports as a device shows them."""

    ports: list[tuple[int, str]]  # (port, state)
    not_shown: dict[str, int]  # state -> ports in it not listed

    def has(self, state: str) -> bool:
        return state in self.not_shown or any(s == state for _, s in self.ports)


def _listing(s: PortStates, answered: Collection[int] = ()) -> Listing:
    """The ports of `s` a device lists, with their states, and the count of each state it does
    not; `answered`: ports open by other evidence than the scan (UDP queries' answers)."""
    named = set(answered) - s.open.keys()
    found = s.open.keys() | named
    ports = [(p, "open") for p in named] + ([] if s.tarpit else [(p, "open") for p in s.open])
    not_shown = {"open": s.open_count} if s.tarpit else {}
    for name, listed, count in (("closed", s.closed, s.closed_count),
                                ("filtered", s.unreachable, s.unreachable_count),
                                (SILENT_STATE[s.protocol], s.silent, s.silent_count)):
        # A port the scan heard nothing from yet answered a query is open: it leaves the count.
        count = max(0, count - len(listed & named))
        listed = listed - found
        if count and count <= LIST_LIMIT and len(listed) == count:
            ports += [(p, name) for p in listed]
        elif count:
            not_shown[name] = count
    return Listing(ports, not_shown)


def _os_guess(h: Host) -> Guess | None:
    # A tarpit's SYN-ACKs come from whatever forges them, not from the host's own stack.
    if h.tarpit:
        return None
    banners = [i.banner for i in h.services.values() if i.banner] + h.evidence
    return guess(h.tcp.open.values(), banners)


def _optional(h: Host, os: Guess | None, tcp: Listing, udp: Listing) -> dict[str, Any]:
    """The device's fields that appear only when they say something."""
    fields: dict[str, Any] = {}
    if h.names:
        fields["hostnames"] = [{"name": name, "source": source} for source, name in h.names.items()]
    if os:
        fields["os_confidence"] = round(os.confidence, 2)
    if tcp.not_shown:
        fields["not_shown"] = tcp.not_shown
    if udp.not_shown:
        fields["not_shown_udp"] = udp.not_shown
    if "udp" in h.scans and h.scans["udp"].icmp_limited:
        fields["udp_icmp_limited"] = True
    if h.tarpit:
        fields["tarpit"] = True
    if h.timed_out:
        fields["timed_out"] = True
    return fields | _evidence(h)


def _evidence(h: Host) -> dict[str, Any]:
    """What service detection saw of which machine this is (the inventory's identity, store/compare):
    its SSH host keys and TLS certificates, by port."""
    found = sorted(h.services.items())
    host_keys = [{"port": p, **i.extra["hostkey"]} for p, i in found if i.extra.get("hostkey")]
    certificates = [{"port": p, **{k: i.extra["tls"][k] for k in CERTIFICATE_FIELDS}}
                    for p, i in found if (i.extra.get("tls") or {}).get("sha256")]
    return {k: v for k, v in (("host_keys", host_keys), ("certificates", certificates)) if v}


def _port(port: int, protocol: str, state: str, info: ServiceInfo | None) -> dict:
    entry: dict = {"port": port, "protocol": protocol, "state": state, "service": well_known_service(port)}
    if info is None:
        return entry
    if info.service != "unknown":
        entry["service"] = info.service.upper()
    for key in ("product", "version", "banner", "cpe"):
        if getattr(info, key):
            entry[key] = getattr(info, key)
    return entry


def document(scan_id: str, status: str, devices: list[dict], duration: float, **meta: object) -> dict:
    """The body of GET /api/v1/scans/{id}/result; `meta` adds fields such as target and profile."""
    return {
        "id": scan_id,
        "status": status,
        **meta,
        "devices_found": len(devices),
        "open_ports_total": sum(1 for d in devices for p in d["ports"] if p["state"] == "open"),
        "duration_seconds": round(duration),
        "devices": devices,
    }
