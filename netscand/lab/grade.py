"""Grading a scan result against the lab's ground truth, field by field.

Tests assert on the grades; bench/profiling.py tabulates them for netscand and nmap side by side,
so both are judged by the same rules. A device here is the result document's shape (ip, mac,
hostname, vendor, os_guess, ports with service/product/version); nmap's XML is read into it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from netscand.lab.responders import MDNS_PORT, NETBIOS_PORT

OK, UNKNOWN, WRONG = "ok", "unknown", "wrong"
# A UDP port reported "open|filtered": nothing came back, so the tool could not tell, which is
# neither right nor wrong (a busy host's ICMP rate limit silences closed ports too).
UNCONFIRMED = "unconfirmed"
SILENT = "open|filtered"
# The UDP ports netscand's name queries ask on every host (profiling.names: NetBIOS, SNMP, mDNS),
# written out here since the lab does not import profiling; tests/lab/test_servers.py checks them.
NAME_QUERY_PORTS = frozenset({137, 161, 5353})
# How each OS family may be written by a tool ("Linux 5.0 - 5.14", "Linux (Debian)").
FAMILY_WORDS = {"Linux": ("linux",)}


@dataclass(frozen=True)
class Grade:
    host: str  # the lab host's name
    field: str  # "service", "product", "version", "os", "hostname", "vendor", "mdns", ...
    where: str  # "tcp/22", or "" for a host-wide field
    expected: Any
    got: Any
    verdict: str  # OK, UNKNOWN (nothing said), WRONG (something else said)


def _verdict(ok: bool, got: Any) -> str:
    return OK if ok else (UNKNOWN if got in (None, "", []) else WRONG)


def _same_product(expected: str, got: str | None) -> bool:
    """Products match when one names the other ("Redis" in nmap's "Redis key-value store")."""
    if not got:
        return False
    e, g = expected.lower(), got.lower()
    return e in g.split() or g in e.split() or e == g


def _same_version(expected: str, got: str | None) -> bool:
    """The upstream version must lead what the tool says ("9.2p1" in "9.2p1 Debian 2+deb12u10")."""
    return bool(got) and str(got).split()[0] == expected


def _os_family(text: str | None) -> str | None:
    if not text:
        return None
    lowered = text.lower()
    return next((family for family, words in FAMILY_WORDS.items() if any(w in lowered for w in words)), text)


def _port_grades(name: str, proto: str, expect: dict[str, dict[str, Any]],
                 ports: dict[tuple[str, int], dict[str, Any]]) -> Iterator[Grade]:
    for port, want in sorted(expect.items(), key=lambda kv: int(kv[0])):
        got = ports.get((proto, int(port)), {})
        where = f"{proto}/{port}"
        service = (got.get("service") or "").lower() or None
        yield Grade(name, "service", where, want["service"], service, _verdict(service == want["service"], service))
        product = got.get("product")
        if want["product"] is not None:  # a daemon whose answers don't name it can't be graded on it
            yield Grade(name, "product", where, want["product"], product,
                        _verdict(_same_product(want["product"], product), product))
        if want["version"] is not None:  # a daemon that never says its version can't be graded on it
            version = got.get("version")
            yield Grade(name, "version", where, want["version"], version,
                        _verdict(_same_version(want["version"], version), version))


def _host_grades(host: dict[str, Any], device: dict[str, Any], scanned: set[int] | None,
                 udp: Collection[int] | None) -> Iterator[Grade]:
    name = host["name"]
    ports = {(p.get("protocol", "tcp"), p["port"]): p for p in device.get("ports", []) if p["state"] == "open"}
    tcp = {p: want for p, want in host.get("services", {}).items() if scanned is None or int(p) in scanned}
    yield from _port_grades(name, "tcp", tcp, ports)
    looked = {p: want for p, want in host.get("udp", {}).items() if udp is None or int(p) in udp}
    yield from _port_grades(name, "udp", looked, ports)
    if "os_family" in host:
        family = _os_family(device.get("os_guess"))
        # A tuned stack only half imitates another OS: "unknown" is as right as the truth.
        ok = family == host["os_family"] or (host.get("tuned", False) and family is None)
        yield Grade(name, "os", "", host["os_family"], device.get("os_guess"), _verdict(ok, family))


def grade(truth: dict[str, Any], devices: list[dict[str, Any]], scanned: set[int] | None = None,
          udp: Collection[int] | None = NAME_QUERY_PORTS) -> list[Grade]:
    """Service, product, version and OS grades for every lab host that has them in its truth
    (the servers and the router). `scanned`: the TCP ports the tool was asked to scan (None:
    all); `udp`: the UDP ports it looked at (None: all; by default the name queries' ports,
    which every profiling scan asks)."""
    by_ip = {d["ip"]: d for d in devices}
    out: list[Grade] = []
    for host in truth["hosts"]:
        if "services" in host:
            out += _host_grades(host, by_ip.get(host["ip"], {}), scanned, udp)
    router = truth["router"]
    on_router = [ip for ip in router["ips"] if ip in by_ip]  # it is graded when it was a target
    if on_router:
        out += _host_grades({**router, "name": "router"}, by_ip[on_router[0]], scanned, udp)
    return out


def identity_grades(truth: dict[str, Any], devices: list[dict[str, Any]]) -> list[Grade]:
    """What netscand alone reports: MAC, vendor, hostname and the other names, per lab host."""
    by_ip = {d["ip"]: d for d in devices}
    out: list[Grade] = []
    for host in truth["hosts"]:
        device = by_ip.get(host["ip"], {})
        name = host["name"]
        names = {n["source"]: n["name"] for n in device.get("hostnames", [])}
        out.append(Grade(name, "hostname", "", host["hostname"], device.get("hostname"),
                         _verdict(device.get("hostname") == host["hostname"], device.get("hostname"))))
        if not host["routed"]:  # behind a router neither MAC nor vendor can be known
            mac = device.get("mac")
            out.append(Grade(name, "mac", "", host["mac"].upper(), mac, _verdict(mac == host["mac"].upper(), mac)))
            if "vendor" in host:
                got = device.get("vendor")
                out.append(Grade(name, "vendor", "", host["vendor"], got, _verdict(got == host["vendor"], got)))
        if "mdns" in host:
            out.append(Grade(name, "mdns", "", host["mdns"], names.get("mdns"),
                             _verdict(names.get("mdns") == host["mdns"], names.get("mdns"))))
        if "netbios" in host:
            want = host["netbios"]["name"]
            out.append(Grade(name, "netbios", "", want, names.get("netbios"),
                             _verdict(names.get("netbios") == want, names.get("netbios"))))
    return out


def udp_listening(host: dict[str, Any]) -> set[int]:
    """The UDP ports a lab host (or the router) has a socket on: its daemons' and the name
    responders' (mDNS, NetBIOS), which answer only the queries they know but are there."""
    ports = {int(p) for p in host.get("udp", {})}
    return ports | ({MDNS_PORT} if "mdns" in host else set()) | ({NETBIOS_PORT} if "netbios" in host else set())


def expected_udp_states(host: dict[str, Any]) -> dict[int, str]:
    """The UDP ports of a lab host whose state is not "closed" (what Linux answers elsewhere,
    ICMP port unreachable), by the state a scan should report."""
    filtered = dict.fromkeys(host.get("udp_filtered", []), "filtered")
    return filtered | dict.fromkeys(host.get("udp_silent", []), SILENT) | dict.fromkeys(udp_listening(host), "open")


def udp_state_grades(truth: dict[str, Any], states: dict[str, dict[int, str]], probed: Iterable[int],
                     ips: Iterable[str]) -> list[Grade]:
    """Each probed UDP port of each lab host at `ips` (the router by any of its addresses):
    the state a tool reported (`states`: address -> port -> state) against the truth."""
    out: list[Grade] = []
    for name, ip, host in _hosts_at(truth, set(ips)):
        reported, expected = states.get(ip, {}), expected_udp_states(host)
        for port in probed:
            want, got = expected.get(port, "closed"), reported.get(port)
            verdict = OK if got == want else (UNCONFIRMED if got == SILENT else _verdict(False, got))
            out.append(Grade(name, "state", f"udp/{port}", want, got, verdict))
    return out


def _hosts_at(truth: dict[str, Any], ips: set[str]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for host in truth["hosts"]:
        if host["ip"] in ips:
            yield host["name"], host["ip"], host
    router = truth["router"]
    on_router = [ip for ip in router["ips"] if ip in ips]
    if on_router:  # graded once, as grade() does, whichever address was scanned
        yield "router", on_router[0], router
