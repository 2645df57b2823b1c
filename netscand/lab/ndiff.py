"""nmap's ndiff run on two nmap XML files, its XML report (`ndiff --xml`) read into a flat list
of differences, so that tests can compare what ndiff says with what netscand's /changes says.

ndiff pairs hosts by their first address and first host name: a host whose address or name
changed is one gone and one appeared to it. Its exit status is 0 without differences, 1 with.
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

NDIFF = "/usr/bin/ndiff"


@dataclass(frozen=True)
class Difference:
    """host_appeared, host_gone; address, hostname, os (the names on either side, in tuples);
    state (a port's); service ((name, product, version)); script (its output; `script` names it)."""

    kind: str
    host: str  # the host's IP address (its first one)
    port: int | None = None
    protocol: str | None = None
    before: object = None
    after: object = None
    script: str | None = None


def ndiff(a: Path, b: Path) -> list[Difference]:
    done = subprocess.run([NDIFF, "--xml", str(a), str(b)], capture_output=True, text=True, timeout=60)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"ndiff failed ({done.returncode}): {done.stderr.strip()}")
    return parse(done.stdout)


def parse(report: str) -> list[Difference]:
    found: list[Difference] = []
    for hostdiff in ET.fromstring(report).iter("hostdiff"):
        for side, kind in (("a", "host_gone"), ("b", "host_appeared")):
            for host in hostdiff.findall(f"{side}/host"):
                found.append(Difference(kind, _ip(host)))
        for host in hostdiff.findall("host"):
            found += _host(host)
    return found


def _ip(host: ET.Element) -> str:
    addresses = host.findall("address") + host.findall("b/address") + host.findall("a/address")
    return next((a.get("addr", "") for a in addresses if a.get("addrtype", "ipv4") != "mac"), "")


def _host(host: ET.Element) -> list[Difference]:
    ip = _ip(host)
    found = [Difference(kind, ip, before=_all(host, f"{where}/a/{tag}", attr),
                        after=_all(host, f"{where}/b/{tag}", attr))
             for kind, where, tag, attr in (("address", ".", "address", "addr"),
                                            ("hostname", "hostnames", "hostname", "name"),
                                            ("os", "os", "osmatch", "name"))
             if host.find(f"{where}/a") is not None or host.find(f"{where}/b") is not None]
    for portdiff in host.iterfind("ports/portdiff"):
        found += _port(ip, portdiff)
    return found


def _all(host: ET.Element, path: str, attr: str) -> tuple[str, ...]:
    return tuple(e.get(attr, "") for e in host.iterfind(path))


def _port(ip: str, portdiff: ET.Element) -> list[Difference]:
    same = portdiff.find("port")
    if same is None:  # the state changed (or the port is new or gone): a side each
        a, b = portdiff.find("a/port"), portdiff.find("b/port")
        spec = a if a is not None else b
        assert spec is not None
        return [Difference("state", ip, int(spec.get("portid", 0)), spec.get("protocol"), _state(a), _state(b))]
    port, protocol = int(same.get("portid", 0)), same.get("protocol")
    found = []
    services = [_service(same.find(f"{side}/service")) for side in ("a", "b")]
    if services != [None, None]:
        found.append(Difference("service", ip, port, protocol, *services))
    scripts = {side: {s.get("id"): s.get("output") for s in same.iterfind(f"{side}/script")} for side in ("a", "b")}
    for script in sorted(scripts["a"].keys() | scripts["b"].keys(), key=str):
        found.append(Difference("script", ip, port, protocol, scripts["a"].get(script), scripts["b"].get(script),
                                script))
    return found


def _state(port: ET.Element | None) -> str | None:
    state = None if port is None else port.find("state")
    return None if state is None else state.get("state")


def _service(service: ET.Element | None) -> tuple[str | None, ...] | None:
    return None if service is None else tuple(service.get(k) for k in ("name", "product", "version"))
