"""What changed between two views of a network: the pure comparison behind the inventory's merge
(store/inventory.py) and the diff of two stored scans (scan/changes.py).

It lives in the store layer because the merge compares inside the transaction that reads the
inventory's previous state and writes the new one, and the store imports nothing above it.

Devices are dicts shaped as a result document lists them (`ip`, `mac`, `hostname`, `os_guess`,
`ports`, the optional `tarpit`, `timed_out`, `not_shown`...). A device of the earlier view may
also carry `identity` (how the inventory knows it), `present` (false once a scan found it gone)
and `detected`: its ports ("22/tcp") whose service, product and version came from service
detection rather than the port's registered name.

The rules (docs/api.md, "Changes"):
- identity: a MAC that is not locally administered (randomized), else an SSH host key, else a TLS
  certificate, else the hostname, else the address; evidence several devices of a view share
  names none of them; evidence other than a MAC finds a device only where it was looked for
  (_findable); a replaced key or certificate keeps a device unless its MAC or name differs;
  one device of a view per identity, the lowest address first, none held by another device;
- a port opens when the later view lists it open and the earlier did not; it closes only where
  the later scan probed it (its TCP or UDP port list), found the device, and lists every open
  port of that protocol (not a tarpit's, not a timed-out host's);
- service, product and version change only on a port open in both, when both views got them
  from service detection and both know them; a version only under the same product;
- the OS changes when both views guessed one and they differ;
- CVEs ("vulnerable" findings) are found and fixed only by a scan that matched CVEs.
"""

from __future__ import annotations

import ipaddress
import socket
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Device = Mapping[str, Any]
Range = tuple[int, int]
PortKey = tuple[int, str]  # (port, protocol)

KINDS = ("device_appeared", "device_gone", "address_changed", "port_opened", "port_closed",
         "service_changed", "product_changed", "version_changed", "os_changed", "cve_found", "cve_fixed")
PORT_FIELDS = ("service", "product", "version")  # each one's change is `<field>_changed`
DETECTED_FIELDS = (*PORT_FIELDS, "banner", "cpe")  # what service detection tells of a port
CVE_FIELDS = ("cves", "cve_note")
# Identity kinds, strongest first: a MAC names the hardware, a host key or certificate the system
# installed on it (until a reinstall or renewal), a name what someone called it.
RANK = {"mac": 5, "ssh": 4, "tls": 3, "name": 2, "ip": 1}
# Kinds a device replaces in its life (a reinstall's new host key, a renewed certificate): another
# one of them at its address does not make it another device.
ROTATES = frozenset({"ssh", "tls"})
# A finding's severity as the inventory ranks it (inventory max_severity and inventory_cves.severity,
# the device filters' min_severity); a finding without a score is 0, as is a device without findings.
SEVERITY_RANKS = {"low": 1, "medium": 2, "high": 3, "critical": 4}


def unregistered(port: int) -> str | None:
    """No port has a registered name: every named service counts as identified (Covered's default,
    for views whose ports carry no fallback names)."""
    return None


def identified(port: Mapping[str, Any], registered: str | None) -> bool:
    """Whether service detection identified a port: it told more than a name, or a name other than
    the port's registered one (`registered`), which a result falls back to when detection did not."""
    return any(port.get(k) for k in ("product", "version", "banner", "cpe")) or \
        (port.get("service") is not None and port.get("service") != registered)


@dataclass(frozen=True)
class Covered:
    """What a scan looked at: its target addresses (IPv4 inclusive ranges), the TCP and UDP ports
    it probed, and whether it did service detection and matched CVEs (with CVE data loaded)."""

    ranges: tuple[Range, ...] = ()
    tcp: frozenset[int] = frozenset()
    udp: frozenset[int] = frozenset()
    services: bool = False
    cves: bool = False
    # the registered name of a port (scan/result.py well_known_service): what a port's service
    # falls back to when detection did not identify it
    registered: Callable[[int], str | None] = field(default=unregistered, compare=False)
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranges", _merged(self.ranges))
        object.__setattr__(self, "_starts", tuple(lo for lo, _ in self.ranges))

    def covers(self, ip: str) -> bool:
        n = _number(ip)
        i = bisect_right(self._starts, n) - 1
        return n >= 0 and i >= 0 and n <= self.ranges[i][1]

    def probed(self, key: PortKey) -> bool:
        return key[0] in (self.tcp if key[1] == "tcp" else self.udp)

    def detected(self, port: Mapping[str, Any]) -> bool:
        """Whether this scan's service detection identified the port."""
        return self.services and identified(port, self.registered(port["port"]))

    def __and__(self, other: Covered) -> Covered:
        """What both looked at (the diff of two scans)."""
        return Covered(_intersection(self.ranges, other.ranges), self.tcp & other.tcp, self.udp & other.udp,
                       self.services and other.services, self.cves and other.cves, self.registered)

    def with_addresses(self, ips: Iterable[str]) -> Covered:
        """These addresses covered too (a scan looked at whatever it found)."""
        extra = tuple((n, n) for n in map(_number, ips) if n >= 0)
        return Covered(self.ranges + extra, self.tcp, self.udp, self.services, self.cves, self.registered)


def _number(ip: str) -> int:
    """An IPv4 address's number, -1 for anything else. inet_pton rather than ipaddress: a merge
    of a /16 reads each of its 65,536 addresses a few times."""
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big")
    except (OSError, TypeError):
        return -1


def ip_key(ip: str) -> bytes:
    """An address as the stores' ip_key columns hold it: its version, then its number in 16 bytes
    big-endian, so that blobs sort as addresses do (an integer column would not fit IPv6)."""
    n = _number(ip)
    if n >= 0:
        return bytes([4]) + n.to_bytes(16, "big")
    address = ipaddress.ip_address(ip)
    return bytes([address.version]) + int(address).to_bytes(16, "big")


def _merged(ranges: Iterable[Range]) -> tuple[Range, ...]:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def _intersection(a: tuple[Range, ...], b: tuple[Range, ...]) -> tuple[Range, ...]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


# -- identity ------------------------------------------------------------------------------------

def randomized(mac: str) -> bool:
    """A locally administered MAC (the second bit of its first octet): what phones and laptops
    make up per network, so it names no device for long."""
    try:
        return bool(int(mac[:2], 16) & 0x02)
    except ValueError:
        return True  # not a MAC we can read: trusted no more than a random one


def evidence(device: Device) -> list[str]:
    """What may recognise a device other than its address, strongest first: its MAC (unless
    randomized), the host keys of its SSH ports and the certificates of its TLS ports (by port),
    its hostname."""
    found = []
    if (mac := device.get("mac")) and not randomized(mac):
        found.append(f"mac:{mac.upper()}")
    found += [f"ssh:{k['fingerprint']}" for k in device.get("host_keys") or () if k.get("fingerprint")]
    found += [f"tls:{c['sha256']}" for c in device.get("certificates") or () if c.get("sha256")]
    if name := device.get("hostname"):
        found.append(f"name:{name.lower().rstrip('.')}")
    return list(dict.fromkeys(found))


def keys(device: Device, shared: frozenset[str] = frozenset()) -> list[str]:
    """How a device may be recognised, strongest first; the address always last. Evidence in
    `shared` (several devices of its view carry it) names none of them."""
    return _keys(evidence(device), device["ip"], shared)


def _keys(shown: list[str], ip: str, shared: frozenset[str]) -> list[str]:
    return [*(k for k in shown if k not in shared), f"ip:{ip}"]


def shared_evidence(view: Sequence[Device]) -> frozenset[str]:
    """The evidence several devices of one view carry, which would make one device hop between
    their addresses: a generic PTR name ("dhcp.example"), cloned VMs' one host key, a wildcard
    certificate on many hosts, a load balancer's addresses. Not a MAC: one answering for several
    addresses is one machine's, and names the first (pair)."""
    return _shared([evidence(d) for d in view])


def _shared(shown: Iterable[list[str]]) -> frozenset[str]:
    counts = Counter(k for found in shown for k in found if not k.startswith("mac:"))
    return frozenset(k for k, n in counts.items() if n > 1)


def _kind(identity: str) -> str:
    return identity.partition(":")[0]


def _rank(identity: str) -> int:
    return RANK.get(_kind(identity), 0)


def _compatible(known: Device, candidates: list[str]) -> bool:
    """Whether a device found at a known device's address, recognisable by `candidates`, may be
    it: not when both have evidence of the kind that identifies the known one, and it differs. A
    host key or certificate that differs may be a replaced one (ROTATES), unless the known
    device's MAC or hostname says another machine took its address (a DHCP lease's next holder)."""
    identity = known["identity"]
    kind = _kind(identity)
    if kind == "ip":
        return True
    if kind not in ROTATES:
        return not _contradicts({identity}, candidates, kind)
    mine = set(evidence(known))
    return not any(_contradicts(mine, candidates, k) for k in ("mac", "name"))


def _contradicts(mine: set[str], theirs: list[str], kind: str) -> bool:
    """Whether both have evidence of `kind`, and none in common."""
    a, b = {k for k in mine if _kind(k) == kind}, {k for k in theirs if _kind(k) == kind}
    return bool(a and b) and not a & b


def _findable(known: Device, key: str, covered: Covered | None) -> bool:
    """Whether a device found with `key`, the identity of a known device, may be it: by a MAC
    (on-link evidence) always; by other evidence, which another machine may carry too (a cloned
    host key, a default or wildcard certificate, a reused name), only if the known device is gone
    or its address is one this scan looked at (and did not find it there with that evidence).
    Elsewhere it is still there for all this scan knows, and the one found is another machine."""
    return _kind(key) == "mac" or covered is None or not known.get("present", True) or covered.covers(known["ip"])


def _identity(mine: str | None, shown: list[str], candidates: list[str], free: list[str],
              shared: frozenset[str]) -> str:
    """The identity a later device takes: the earlier one's (`mine`, when matched), unless the
    view shows a stronger one, shows it shared, or shows its replacement (a new host key or
    certificate: evidence of its kind, and not it). `shown`: its evidence, shared or not; `free`:
    its candidates no other device holds. Shared, `mine` is still kept when none is free."""
    best = free[0] if free else None
    if mine is None or mine in shared:
        return best or mine or candidates[-1]
    if best and (_rank(best) > _rank(mine) or
                 (_kind(best) == _kind(mine) and _kind(mine) in ROTATES and mine not in shown)):
        return best
    return mine


@dataclass
class Pairing:
    """Which earlier device each later one is: matched (earlier, later, the later's identity),
    new (later, identity), and the earlier ones no later device is (indexes into the inputs)."""

    matched: list[tuple[int, int, str]] = field(default_factory=list)
    new: list[tuple[int, str]] = field(default_factory=list)
    unmatched: list[int] = field(default_factory=list)


def pair(before: Sequence[Device], after: Sequence[Device], covered: Covered | None = None) -> Pairing:
    """Each later device matched to the earlier one with its strongest identity (its MAC, a host
    key, certificate or hostname no other later device has) that may be it (_findable: `covered`
    is what the later view looked at; None: everything), else to an earlier one at its address
    that nothing contradicts (present first); identities first for every later device, so that
    one without any taking a moved device's old address does not take the moved device too.
    Earlier devices have `identity`, or are given theirs as later ones are (a result's)."""
    known = before
    if any("identity" not in b for b in before):
        given = {j: identity for j, identity in pair([], before).new}
        known = [dict(b, identity=b.get("identity") or given[i]) for i, b in enumerate(before)]
    shown = [evidence(d) for d in after]
    shared = _shared(shown)
    by_identity = {k["identity"]: i for i, k in enumerate(known)}
    ordered = sorted(range(len(after)), key=lambda j: (_number(after[j]["ip"]), after[j]["ip"]))
    candidates = {j: _keys(shown[j], after[j]["ip"], shared) for j in ordered}
    matches: dict[int, int] = {}
    claimed: set[int] = set()
    for j in ordered:
        match = next((by_identity[k] for k in candidates[j][:-1] if k in by_identity and
                      by_identity[k] not in claimed and _findable(known[by_identity[k]], k, covered)), None)
        if match is not None:
            matches[j] = match
            claimed.add(match)
    _match_addresses(known, after, ordered, candidates, matches, claimed)
    taken: set[str] = set()
    result = Pairing()
    for j in ordered:
        match = matches.get(j)
        mine = known[match]["identity"] if match is not None else None
        free = [k for k in candidates[j] if k not in taken and by_identity.get(k, match) == match]
        identity = _identity(mine, shown[j], candidates[j], free, shared)
        taken.add(identity)
        if match is None:
            result.new.append((j, identity))
        else:
            result.matched.append((match, j, identity))
    result.unmatched = [i for i in range(len(known)) if i not in claimed]
    return result


def _match_addresses(known: Sequence[Device], after: Sequence[Device], ordered: list[int],
                     candidates: dict[int, list[str]], matches: dict[int, int], claimed: set[int]) -> None:
    """The later devices no identity matched, matched to an unclaimed earlier device at their
    address that nothing contradicts (present ones first)."""
    by_ip: dict[str, list[int]] = {}
    for i in sorted(range(len(known)), key=lambda i: not known[i].get("present", True)):
        by_ip.setdefault(known[i]["ip"], []).append(i)
    for j in (j for j in ordered if j not in matches):
        match = next((i for i in by_ip.get(after[j]["ip"], ())
                      if i not in claimed and _compatible(known[i], candidates[j])), None)
        if match is not None:
            matches[j] = match
            claimed.add(match)


# -- one device's changes ------------------------------------------------------------------------

def port_name(key: PortKey) -> str:
    return f"{key[0]}/{key[1]}"


def open_ports(device: Device) -> dict[PortKey, Mapping[str, Any]]:
    return {(p["port"], p["protocol"]): p for p in device.get("ports") or () if p.get("state") == "open"}


def _lists_every_open(device: Device, protocol: str) -> bool:
    """Whether a found device's listing names every open port of `protocol`: a tarpit's TCP
    ports and a host answering every UDP port are counted instead, and a host that ran out of
    time was not probed on all."""
    counted = device.get("not_shown" if protocol == "tcp" else "not_shown_udp") or {}
    return not device.get("timed_out") and "open" not in counted and not (protocol == "tcp" and device.get("tarpit"))


def closes(key: PortKey, after: Device, covered: Covered) -> bool:
    """Whether a port not open in `after` is known not to be."""
    return covered.probed(key) and _lists_every_open(after, key[1])


def vulnerable(port: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The port's "vulnerable" findings."""
    found = (port or {}).get("cves") or ()
    return [f for f in found if isinstance(f, Mapping) and f.get("status") == "vulnerable"]


def _vulnerable(port: Mapping[str, Any] | None) -> dict[str, str | None]:
    """The port's "vulnerable" findings: CVE id -> severity."""
    return {f["id"]: f.get("severity") for f in vulnerable(port)}


def _change(kind: str, ip: str, before: Any, after: Any, key: PortKey | None = None,
            **extra: Any) -> dict[str, Any]:
    where = {"port": key[0], "protocol": key[1]} if key else {}
    return {"kind": kind, "ip": ip, **where, "before": before, "after": after, **extra}


def _cve_changes(ip: str, key: PortKey, before: Mapping[str, Any] | None,
                 after: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    old, new = _vulnerable(before), _vulnerable(after)
    found = [_change("cve_found", ip, None, c, key, cve={"id": c, "severity": new[c]})
             for c in sorted(new.keys() - old.keys())]
    return found + [_change("cve_fixed", ip, c, None, key, cve={"id": c, "severity": old[c]})
                    for c in sorted(old.keys() - new.keys())]


def _detected(device: Device, key: PortKey) -> bool:
    return port_name(key) in (device.get("detected") or ())


def _service_changes(ip: str, key: PortKey, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict]:
    """Both ports got their fields from service detection."""
    changes = []
    for name in PORT_FIELDS:
        a, b = old.get(name), new.get(name)
        if a is None or b is None or a == b:
            continue
        if name == "version" and None not in (old.get("product"), new.get("product")) \
                and old.get("product") != new.get("product"):
            continue  # another product: its version is no change of the one before
        changes.append(_change(f"{name}_changed", ip, a, b, key))
    return changes


def device_changes(before: Device, after: Device, covered: Covered) -> list[dict[str, Any]]:
    """What changed on one device between its earlier state and a scan's finding of it (the
    same device, whatever its address): ports, their services, OS and CVEs."""
    ip = after["ip"]
    old, new = open_ports(before), open_ports(after)
    changes: list[dict[str, Any]] = []
    for key in sorted(new.keys() - old.keys()):
        changes.append(_change("port_opened", ip, None, "open", key))
        if covered.cves:
            changes += _cve_changes(ip, key, None, new[key])
    for key in sorted(old.keys() - new.keys()):
        if closes(key, after, covered):
            changes.append(_change("port_closed", ip, "open", None, key))
            if covered.cves:
                changes += _cve_changes(ip, key, old[key], None)
    for key in sorted(old.keys() & new.keys()):
        if _detected(before, key) and covered.detected(new[key]):
            changes += _service_changes(ip, key, old[key], new[key])
        if covered.cves:
            changes += _cve_changes(ip, key, old[key], new[key])
    if before.get("os_guess") and after.get("os_guess") and before["os_guess"] != after["os_guess"]:
        changes.append(_change("os_changed", ip, before["os_guess"], after["os_guess"]))
    return changes


def merged(before: Device, after: Device, covered: Covered) -> dict[str, Any]:
    """The device's new state: the scan's finding, with what the scan did not look at kept from
    before (ports it did not probe or could not list, service fields without detection, CVEs
    without matching, a name or OS it did not find). The changes device_changes lists are
    exactly the differences on what it looked at."""
    old, new = open_ports(before), open_ports(after)
    ports: dict[PortKey, dict[str, Any]] = {k: dict(p) for k, p in old.items()
                                            if k not in new and not closes(k, after, covered)}
    detected = {k for k in ports if _detected(before, k)}
    for key, port in new.items():
        entry, previous = dict(port), old.get(key)
        fresh = covered.detected(port)
        if previous is not None and not fresh:  # a fallback name or nothing: what was known stays
            entry = {k: v for k, v in entry.items() if k not in DETECTED_FIELDS} | \
                {k: previous[k] for k in DETECTED_FIELDS if k in previous}
        if fresh or (previous is not None and _detected(before, key)):
            detected.add(key)
        if not covered.cves:
            entry = {k: v for k, v in entry.items() if k not in CVE_FIELDS}
            if previous is not None and previous.get("cpe") == entry.get("cpe"):
                entry |= {k: previous[k] for k in CVE_FIELDS if k in previous}  # still that version's
        ports[key] = entry
    keep = {k: before[k] for k in ("mac", "hostname", "vendor", "os_guess", "hostnames") if before.get(k)}
    found = {k: after[k] for k in ("mac", "hostname", "vendor", "os_guess", "hostnames") if after.get(k)}
    return {**keep, **found, "ip": after["ip"], "ports": [ports[k] for k in sorted(ports)],
            "detected": sorted(port_name(k) for k in detected)}


def unchanged(before: Device, after: Device, covered: Covered) -> bool:
    """Whether a scan found a device exactly as it was (most of a network, from scan to scan):
    then it has no changes and merged() would give its state back. Checked first, as it costs a
    fraction of computing either."""
    if any(after.get(k) and after[k] != before.get(k) for k in ("mac", "hostname", "vendor", "os_guess", "hostnames")):
        return False
    found = [p for p in after.get("ports") or () if p.get("state") == "open"]
    if found != before.get("ports"):
        return False
    detected = before.get("detected") or ()
    return not covered.services or all(port_name((p["port"], p["protocol"])) in detected
                                       for p in found if covered.detected(p))


# -- two views -----------------------------------------------------------------------------------

def compare(before: Sequence[Device], after: Sequence[Device], covered: Covered) -> list[dict[str, Any]]:
    """Every change from one view to the other, by address: a device appears or is gone only
    where both views looked (an address `covered` covers)."""
    pairing = pair(before, after, covered)
    changes: list[dict[str, Any]] = []
    for i, j, _ in pairing.matched:
        b, a = before[i], after[j]
        if b["ip"] != a["ip"]:
            changes.append(_change("address_changed", a["ip"], b["ip"], a["ip"]))
        changes += device_changes(b, a, covered)
    changes += [_change("device_appeared", after[j]["ip"], None, after[j]["ip"])
                for j, _ in pairing.new if covered.covers(after[j]["ip"])]
    changes += [_change("device_gone", before[i]["ip"], before[i]["ip"], None)
                for i in pairing.unmatched if covered.covers(before[i]["ip"])]
    return sorted(changes, key=order)


def order(change: Mapping[str, Any]) -> tuple:
    """Changes by address, then kind (in KINDS' order), port and CVE."""
    return (_number(change["ip"]), change["ip"], KINDS.index(change["kind"]), change.get("port", 0),
            change.get("protocol", ""), (change.get("cve") or {}).get("id", ""))
