"""A scan's result as nmap's XML output (-oX), valid against the DTD nmap installs
(/usr/share/nmap/nmap.dtd), for the tools that read it: python-libnmap, ndiff, importers.

What the DTD fixes, and how netscand's result fills it:
- `scanner` can only be "nmap"; `version` is netscand's and `args` says it was netscand's scan,
  and so does a comment at the top.
- Hosts: only those found up (status up); the reason is what netscand can tell, as nmap words it:
  an ARP reply on the link, else an open TCP port's SYN-ACK, a closed one's reset, a UDP answer,
  an ICMP port unreachable.
- Hostnames: the DNS (PTR) and user-given names; the names a host gives itself (mDNS, NetBIOS,
  SNMP) are a host script `netscand-names`, "source: name" a line, as they come and go.
- Ports a device counts rather than lists (not_shown, not_shown_udp) are `extraports`, one per
  state with a reason per protocol.
- A service's `method` is "probed" (conf 10) where service detection said something of the
  port, else "table" (conf 3), the port's registered name, as nmap writes it. Names are in lower
  case, as nmap-services writes them. The CPE is nmap's CPE 2.2 URI (`cpe:/a:vendor:product:ver`).
- The banner is the service's `servicefp` (the DTD's place for what the service sent), not a
  script result: banners carry dates and counters, and ndiff would report every one as a
  change. CVEs found are a port script `netscand-cves`, their ids one a line, so that ndiff
  reports them found and fixed as /changes does.
- The OS guess is one `osmatch`, its accuracy the guess's confidence in percent, with the
  signature's `osclass` (vendor, family, type; netscand tells no generation).
- No `times` (netscand keeps no round-trip times); each host's start and end are the scan's.
- runstats' hosts: `total` the addresses the scan probed (its targets less the policy's
  exclusions, as a completed scan keeps them), `down` those that did not answer, as nmap counts
  every address it tried; a scan that kept none (running, cancelled, failed) counts only those up.

Every text is escaped, and characters XML 1.0 forbids (control characters, lone surrogates,
U+FFFE, U+FFFF) or discourages (DEL, C1 controls) become U+FFFD: banners and host names come
from the hosts scanned, and a hostile one must not make the document invalid (nor drive the
terminal it is printed to).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from netscand import __version__
from netscand.scan.profiles import PROFILES
from netscand.scan.result import well_known_service
from netscand.store.clock import parse
from netscand.store.compare import identified
from netscand.vuln import cpe as cpe23

XML_OUTPUT_VERSION = "1.05"  # nmap 7.9x's
CVE_SCRIPT = "netscand-cves"
# Characters XML 1.0 allows (its production Char) but DEL and the C1 controls, which it allows but
# discourages: an export printed to a terminal must not drive it. Everything else is replaced.
_FORBIDDEN = re.compile("[^\t\n\r\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ATTR_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                               # Kept as characters: a parser turns them into spaces otherwise.
                               "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"})
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# Why a port is in a state, in nmap's words: (protocol, state) -> reason.
_REASONS = {
    ("tcp", "open"): "syn-ack", ("tcp", "closed"): "reset", ("tcp", "filtered"): "no-response",
    ("udp", "open"): "udp-response", ("udp", "closed"): "port-unreach", ("udp", "filtered"): "host-unreach",
    ("udp", "open|filtered"): "no-response",
}
# Names a host is given (DNS, the user's target) go in <hostnames>, by the DTD's type. The names
# a host calls itself (mDNS, NetBIOS, SNMP) go in a host script: ndiff pairs hosts by their first
# address and first hostname, and one of those answering in one scan but not the next would read
# as a host gone and another appeared.
_HOSTNAME_TYPES = {"dns": "PTR", "user": "user"}
NAMES_SCRIPT = "netscand-names"
# The answers that tell a host is up, strongest first; the reason is the port's (_REASONS).
_HOST_ANSWERS = (("tcp", "open"), ("tcp", "closed"), ("udp", "open"), ("udp", "closed"))
# osclass of each OS signature's name (data/os-signatures.toml): (vendor, osfamily, type) as
# nmap-os-db's classes write them.
OS_CLASSES = {"Linux": ("Linux", "Linux", "general purpose"), "Windows": ("Microsoft", "Windows", "general purpose"),
              "FreeBSD": ("FreeBSD", "FreeBSD", "general purpose"), "macOS": ("Apple", "macOS", "general purpose"),
              "Cisco IOS": ("Cisco", "IOS", "router")}
_DISTRO = re.compile(r" \([^()]*\)$")  # "Linux (Debian)": the banner's distribution after the signature's name
_NOT_SHOWN = (("tcp", "not_shown"), ("udp", "not_shown_udp"))


def clean(text: object) -> str:
    """Text XML 1.0 can hold: forbidden characters become U+FFFD."""
    return _FORBIDDEN.sub("\ufffd", str(text))


def element(name: str, attrs: dict[str, object], *children: str) -> str:
    """<name attrs/> or <name attrs>children</name>."""
    body = "".join(children)
    return f"<{name}{_attributes(attrs)}>{body}</{name}>" if body else f"<{name}{_attributes(attrs)}/>"


def text_element(name: str, text: str) -> str:
    return f"<{name}>{clean(text).translate(_TEXT_ESCAPES)}</{name}>"


def _attributes(attrs: dict[str, object]) -> str:
    """ name="value"... escaped; None values are left out."""
    return "".join(f' {k}="{clean(v).translate(_ATTR_ESCAPES)}"' for k, v in attrs.items() if v is not None)


def cpe_uri(name: str) -> str | None:
    """A CPE 2.3 formatted string as the CPE 2.2 URI nmap writes (`cpe:/a:openbsd:openssh:9.2p1`);
    None for text that is not one."""
    parsed = cpe23.parse(name)
    if parsed is None:
        return None
    values = [parsed.part, parsed.vendor, parsed.product, parsed.version, parsed.update, parsed.edition,
              parsed.language]
    while values[-1] == cpe23.ANY:
        values.pop()
    return "cpe:/" + ":".join("" if v == cpe23.ANY else _uri_value(v) for v in values)


def _uri_value(value: str) -> str:
    # The URI binding percent-encodes what is not unreserved (NISTIR 7695 6.1.2.3).
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else
                   "".join(f"%{b:02x}" for b in c.encode()) for c in value)


def port_list(ports: Sequence[int]) -> str:
    """Ports as nmap's scaninfo writes them: "1,3-4,6"."""
    runs: list[list[int]] = []
    for p in sorted(ports):
        if runs and p == runs[-1][1] + 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _epoch(timestamp: str | None) -> int | None:
    return None if timestamp is None else int(parse(timestamp).timestamp())


def _ctime(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).ctime()


class NmapXml:
    """One scan's document, written as head, pages of hosts and tail. Counts the hosts it wrote
    for runstats, beside the `addresses` the scan probed when it kept them (None: not known)."""

    def __init__(self, scan: dict[str, Any], addresses: int | None = None) -> None:
        self.scan = scan
        self.addresses = addresses
        self.start = _epoch(scan["started_at"] or scan["created_at"]) or 0
        self.end = _epoch(scan["finished_at"])
        self.hosts = 0

    def head(self) -> bytes:
        scan = self.scan
        targets = scan["target"] if isinstance(scan["target"], list) else [scan["target"]]
        infos = _scan_infos(scan["profile"], scan.get("options") or {})
        run = "<nmaprun" + _attributes({
            "scanner": "nmap", "args": f"netscand scan --profile {scan['profile']} {' '.join(targets)}",
            "start": self.start, "startstr": _ctime(self.start), "version": __version__,
            "xmloutputversion": XML_OUTPUT_VERSION}) + ">"
        lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<!DOCTYPE nmaprun>",
                 f"<!-- netscand {__version__}: scan {scan['id']} ({scan['profile']}), {scan['status']} -->", run,
                 *(element("scaninfo", {"type": kind, "protocol": protocol, "numservices": len(ports),
                                        "services": port_list(ports)}) for kind, protocol, ports in infos if ports),
                 element("verbose", {"level": 0}), element("debugging", {"level": 0})]
        return "\n".join(lines).encode() + b"\n"

    def page(self, devices: list[dict[str, Any]]) -> bytes:
        self.hosts += len(devices)
        return "".join(self.host(d) + "\n" for d in devices).encode()

    def tail(self) -> bytes:
        end = self.end or int(time.time())
        status = self.scan["status"]
        done = status == "completed"
        elapsed = max(0, end - self.start)
        # nmap's total is every address it tried; the hosts it lists are those up, even with -Pn
        # (each then "up", user-set). netscand lists those that answered: the rest are down.
        total = self.hosts if self.addresses is None else max(self.addresses, self.hosts)
        counted = f"{self.hosts} hosts up" if self.addresses is None else \
            f"{total} IP addresses ({self.hosts} hosts up) scanned in {elapsed} seconds"
        finished = element("finished", {
            "time": end, "timestr": _ctime(end), "elapsed": elapsed, "summary": f"netscand done at {_ctime(end)}; {counted}",
            "exit": "success" if done else "error",
            "errormsg": None if done else self.scan["error"] or f"scan {status}: the result is partial"})
        hosts = element("hosts", {"up": self.hosts, "down": total - self.hosts, "total": total})
        return (element("runstats", {}, finished, hosts) + "\n</nmaprun>\n").encode()

    def host(self, d: dict[str, Any]) -> str:
        return element(
            "host", {"starttime": self.start, "endtime": self.end or int(time.time()),
                     "timedout": "true" if d.get("timed_out") else None,
                     "comment": "tarpit: answers every port" if d.get("tarpit") else None},
            element("status", {"state": "up", "reason": _host_reason(d), "reason_ttl": 0}),
            *_addresses(d), _hostnames(d), _ports(d), _os(d), _names_script(d))


def _scan_infos(name: str, options: dict[str, Any]) -> list[tuple[str, str, tuple[int, ...]]]:
    """(type, protocol, ports) of the scan's profile and options; none for a profile since
    removed or options it no longer takes: the stored scan's hosts are still worth exporting."""
    profile = PROFILES.get(name)
    if profile is None:
        return []
    try:
        return [("syn", "tcp", profile.port_list(options.get("ports"))),
                ("udp", "udp", profile.udp_port_list(options.get("udp_ports")))]
    except (ValueError, TypeError):
        return []


def _host_reason(d: dict[str, Any]) -> str:
    if d.get("mac"):
        return "arp-response"
    answered = {(p["protocol"], p["state"]) for p in d["ports"]} | \
        {(protocol, state) for protocol, key in _NOT_SHOWN for state in d.get(key) or {}}
    return next((_REASONS[a] for a in _HOST_ANSWERS if a in answered), "unknown-response")


def _addresses(d: dict[str, Any]) -> list[str]:
    found = [element("address", {"addr": d["ip"], "addrtype": "ipv6" if ":" in d["ip"] else "ipv4"})]
    if d.get("mac"):
        found.append(element("address", {"addr": d["mac"], "addrtype": "mac", "vendor": d.get("vendor")}))
    return found


def _hostnames(d: dict[str, Any]) -> str:
    # A device saved before its names' sources were kept has its hostname alone, of no known type.
    names = d.get("hostnames") or ([{"name": d["hostname"], "source": None}] if d.get("hostname") else [])
    seen: dict[str, str | None] = {}
    for n in names:
        if n["source"] is None or n["source"] in _HOSTNAME_TYPES:
            seen.setdefault(n["name"], _HOSTNAME_TYPES.get(n["source"] or ""))
    return element("hostnames", {}, *(element("hostname", {"name": name, "type": kind}) for name, kind in seen.items()))


def _names_script(d: dict[str, Any]) -> str:
    told = sorted(f"{n['source']}: {n['name']}" for n in d.get("hostnames") or ()
                  if n["source"] is not None and n["source"] not in _HOSTNAME_TYPES)
    return element("hostscript", {}, element("script", {"id": NAMES_SCRIPT, "output": "\n".join(told)})) \
        if told else ""


def _ports(d: dict[str, Any]) -> str:
    return element("ports", {}, *_extraports(d), *(_port(p) for p in d["ports"]))


def _extraports(d: dict[str, Any]) -> list[str]:
    """One extraports per state, whatever the protocol (as nmap merges them), a reason for each."""
    by_state: dict[str, list[tuple[str, int]]] = {}
    for protocol, key in _NOT_SHOWN:
        for state, count in (d.get(key) or {}).items():
            by_state.setdefault(state, []).append((protocol, count))
    return [element("extraports", {"state": state, "count": sum(n for _, n in counted)},
                    *(element("extrareasons", {"reason": _REASONS.get((protocol, state), "no-response"),
                                               "count": n, "proto": protocol}) for protocol, n in counted))
            for state, counted in by_state.items()]


def _port(p: dict[str, Any]) -> str:
    state = element("state", {"state": p["state"], "reason": _REASONS.get((p["protocol"], p["state"]), "no-response"),
                              "reason_ttl": 0})
    return element("port", {"protocol": p["protocol"], "portid": p["port"]}, state, _service(p), _cve_script(p))


def _service(p: dict[str, Any]) -> str:
    if not p.get("service"):
        return ""
    probed = identified(p, well_known_service(p["port"]))
    uri = cpe_uri(p["cpe"]) if p.get("cpe") else None
    return element("service", {
        "name": p["service"].lower(), "product": p.get("product") or None, "version": p.get("version") or None,
        "method": "probed" if probed else "table", "conf": 10 if probed else 3, "servicefp": p.get("banner") or None},
        *([text_element("cpe", uri)] if uri else []))


def _cve_script(p: dict[str, Any]) -> str:
    # Ids alone, sorted: a severity or score revised in the CVE data is no change on the network.
    ids = sorted({c["id"] for c in p.get("cves") or ()})
    return element("script", {"id": CVE_SCRIPT, "output": "\n".join(ids)}) if ids else ""


def _os(d: dict[str, Any]) -> str:
    if not d.get("os_guess"):
        return ""
    accuracy = round(100 * d.get("os_confidence", 0))
    known = OS_CLASSES.get(_DISTRO.sub("", d["os_guess"]))
    osclass = [] if known is None else [element("osclass", {
        "vendor": known[0], "osfamily": known[1], "type": known[2], "accuracy": accuracy})]
    return element("os", {}, element("osmatch", {"name": d["os_guess"], "accuracy": accuracy, "line": 0}, *osclass))
