"""What a scan found, accumulated from engine records, and its result document.

Open ports arrive one by one; closed and filtered ports arrive as per-shard tallies, plus the
ports themselves when a host has few of them in a shard. A port listed once per state is shown
when the whole host has few ports in that state; otherwise it is counted under `not_shown`, as
nmap does with its "Not shown: 995 closed ports".
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from netscand.engine.shm import R_HOST, R_PORT, R_TALLY, S_CLOSED, S_OPEN, Result
from netscand.profiling.osguess import guess
from netscand.profiling.services import ServiceInfo
from netscand.profiling.vendor import vendor
from netscand.scan.ports import service_name

LIST_LIMIT = 25
STATE_NAMES = {S_OPEN: "open", S_CLOSED: "closed"}  # anything else that is listed is filtered


def well_known_service(port: int) -> str | None:
    """The registered name of a port, in the spec's capitals ("SSH", "HTTPS")."""
    name = service_name(port)
    return name.upper() if name else None


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02X}" for b in mac)


@dataclass
class Fingerprint:
    """How the host's stack answered a SYN on an open port: the OS guess reads this later."""

    ttl: int
    win: int
    ipid: int
    opts: bytes


@dataclass
class Host:
    ip: int
    probed_ports: int = 0
    mac: bytes | None = None
    up: bool = False
    timed_out: bool = False
    hostname: str | None = None  # the best of `names`
    names: dict[str, str] = field(default_factory=dict)  # by source: "dns", "mdns", "netbios", "snmp"
    evidence: list[str] = field(default_factory=list)  # text naming the OS, e.g. SNMP's sysDescr
    udp: dict[int, ServiceInfo] = field(default_factory=dict)  # UDP services that answered a query
    open: dict[int, Fingerprint] = field(default_factory=dict)
    closed: set[int] = field(default_factory=set)
    filtered: set[int] = field(default_factory=set)
    tallies: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    services: dict[int, ServiceInfo] = field(default_factory=dict)  # by port, from detection

    @property
    def closed_count(self) -> int:
        return sum(c for c, _ in self.tallies.values())

    @property
    def filtered_count(self) -> int:
        return max(0, self.probed_ports - len(self.open) - self.closed_count)


class ScanResult:
    def __init__(self) -> None:
        self.hosts: dict[int, Host] = {}
        self.dirty: set[int] = set()  # hosts changed since the store last saw them

    def host(self, ip: int) -> Host:
        h = self.hosts.get(ip)
        if h is None:
            h = self.hosts[ip] = Host(ip)
        return h

    def probed(self, ips: tuple[int, ...], nports: int) -> None:
        for ip in ips:
            self.host(ip).probed_ports += nports

    def add(self, r: Result) -> None:
        if r.kind in (R_HOST, R_PORT, R_TALLY):
            self.dirty.add(r.ip)
        if r.kind == R_HOST:
            h = self.host(r.ip)
            h.up, h.mac = True, r.mac
        elif r.kind == R_PORT:
            h = self.host(r.ip)
            if r.state == S_OPEN:
                h.up = True
                h.open.setdefault(r.port, Fingerprint(r.ttl, r.win, r.ipid, r.opts))
            elif r.state == S_CLOSED:
                h.closed.add(r.port)
            else:
                h.filtered.add(r.port)
        elif r.kind == R_TALLY:
            h = self.host(r.ip)
            h.up = True
            # Keyed by shard, so a shard run twice after a worker restart counts once.
            h.tallies[(r.plan_gen, r.shard)] = (r.a, r.b)

    def mark_up(self, ip: int) -> None:
        self.host(ip).up = True
        self.dirty.add(ip)

    @property
    def up_hosts(self) -> list[Host]:
        return sorted((h for h in self.hosts.values() if h.up), key=lambda h: h.ip)

    def devices(self, profiling: bool = False) -> list[dict]:
        return [self.device(h, profiling) for h in self.up_hosts]

    def take_dirty(self) -> list[Host]:
        hosts = [self.hosts[ip] for ip in sorted(self.dirty) if ip in self.hosts and self.hosts[ip].up]
        self.dirty.clear()
        return hosts

    def device(self, h: Host, profiling: bool = False) -> dict:
        """The result document's device; `profiling` adds what the engine's answers reveal
        without another packet: vendor from the MAC, OS guess from the SYN-ACK fingerprints."""
        ports = [(p, "open") for p in h.open]
        not_shown = {}
        for name, listed, count in (("closed", h.closed, h.closed_count),
                                    ("filtered", h.filtered - h.open.keys(), h.filtered_count)):
            if count and count <= LIST_LIMIT and len(listed) == count:
                ports += [(p, name) for p in listed]
            elif count:
                not_shown[name] = count
        mac = mac_text(h.mac) if h.mac and any(h.mac) else None
        banners = [i.banner for i in h.services.values() if i.banner] + h.evidence
        os = guess(h.open.values(), banners) if profiling else None
        entries = [_port(p, "tcp", s, h.services.get(p)) for p, s in ports]
        entries += [_port(p, "udp", "open", info) for p, info in h.udp.items()]
        device = {
            "ip": str(ipaddress.IPv4Address(h.ip)),
            "mac": mac,
            "hostname": h.hostname,
            "vendor": vendor(mac) if profiling else None,
            "os_guess": os.name if os else None,
            "ports": sorted(entries, key=lambda e: (e["port"], e["protocol"])),
        }
        if h.names:
            device["hostnames"] = [{"name": name, "source": source} for source, name in h.names.items()]
        if os:
            device["os_confidence"] = round(os.confidence, 2)
        if not_shown:
            device["not_shown"] = not_shown
        if h.timed_out:
            device["timed_out"] = True
        return device


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
