"""The lab's server hosts: real Debian daemons on stacks tuned to look like different devices.

Imitation hosts (services.py) give the engine ports and banners at scale; these few hosts give
device profiling something real to be right about. Each is a catalogue entry here, turned into
ground truth by `plan`; daemons.py runs them. What a scan must find on a server is written down
from outside the detector: products by name, versions from the Debian package database.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from netscand.lab.errors import LabError

# Last addresses before the router's .254, far from the imitation hosts' .10 upwards.
SERVER_BASE = 230


@dataclass(frozen=True)
class Daemon:
    """A daemon a server runs: the binary whose Debian package names the version, and what a
    scan should report on each of its ports (service, product, whether it announces a version).
    A product of None: the daemon's answers don't name it (a TFTP error is any TFTP server's)."""

    binary: str
    tcp: dict[int, tuple[str, str | None, bool]] = field(default_factory=dict)
    udp: dict[int, tuple[str, str | None, bool]] = field(default_factory=dict)


DAEMONS = {
    "openssh": Daemon("/usr/sbin/sshd", tcp={22: ("ssh", "OpenSSH", True)}),
    "nginx": Daemon("/usr/sbin/nginx", tcp={80: ("http", "nginx", True), 443: ("https", "nginx", True)}),
    "vsftpd": Daemon("/usr/sbin/vsftpd", tcp={21: ("ftp", "vsftpd", True)}),
    "redis": Daemon("/usr/bin/redis-server", tcp={6379: ("redis", "Redis", True)}),
    "mariadb": Daemon("/usr/sbin/mariadbd", tcp={3306: ("mysql", "MariaDB", True)}),
    # net-snmp's sysDescr is the kernel's, never its own version.
    "snmpd": Daemon("/usr/sbin/snmpd", udp={161: ("snmp", "Net-SNMP", False)}),
    "dnsmasq": Daemon("/usr/sbin/dnsmasq", tcp={53: ("dns", "dnsmasq", True)}, udp={53: ("dns", "dnsmasq", True)}),
    # ntpsec 1.2.2 answers mode 3 (time) but drops unauthenticated mode 6 (READVAR) queries,
    # so neither its name nor its version can be learnt over the wire.
    "ntpsec": Daemon("/usr/sbin/ntpd", udp={123: ("ntp", None, False)}),
    "tftpd-hpa": Daemon("/usr/sbin/in.tftpd", udp={69: ("tftp", None, False)}),
    "memcached": Daemon("/usr/bin/memcached", tcp={11211: ("memcached", "memcached", True)},
                        udp={11211: ("memcached", "memcached", True)}),
    # UPnP IGD: SSDP on UDP 1900, its description and control over HTTP on 5000. Both answer
    # with a UPnP SERVER header, "<OS>/<version> UPnP/1.1 MiniUPnPd/<version>".
    "miniupnpd": Daemon("/usr/sbin/miniupnpd", tcp={5000: ("http", "MiniUPnPd", True)},
                        udp={1900: ("ssdp", "MiniUPnPd", True)}),
}
# UDP ports a server's firewall (nftables) answers for: rejected with ICMP admin-prohibited,
# which a scan must call "filtered", or dropped, which leaves it "open|filtered". Both ports
# carry a protocol payload (IKE, SIP), so a scan probes them in earnest.
UDP_REJECTED = 5060
UDP_DROPPED = 500

# Linux under every server; the tuned ones change what their SYN-ACKs say, not what they are,
# so for them an honest "unknown" is as right as "Linux" (a stack can't be made to lie fully:
# the option order Linux writes stays Linux's).
WINDOWS_LIKE = {"net.ipv4.ip_default_ttl": 128, "net.ipv4.tcp_timestamps": 0}
APPLIANCE_LIKE = {"net.ipv4.ip_default_ttl": 255, "net.ipv4.tcp_timestamps": 0,
                  "net.ipv4.tcp_window_scaling": 0, "net.ipv4.tcp_sack": 0}


@dataclass(frozen=True)
class Server:
    name: str
    routed: bool
    mac: str  # real vendors' OUIs, so the IEEE registry has something true to say
    vendor: str  # the IEEE registry's name for the OUI
    daemons: tuple[str, ...]
    sysctls: dict[str, int] = field(default_factory=dict)
    mdns: bool = False
    netbios: str | None = None
    udp_firewall: bool = False  # rejects UDP_REJECTED and drops UDP_DROPPED


SERVERS = (
    Server("s1", False, "00:14:22:5e:00:01", "Dell Inc.", ("openssh", "nginx", "memcached"), mdns=True),
    # s2 sends every ICMP error its firewall and closed ports call for (no rate limit): a UDP
    # scan can then tell its rejected port (filtered) from its closed and its dropped ones.
    Server("s2", False, "00:15:5d:5e:00:02", "Microsoft Corporation", ("vsftpd", "redis", "tftpd-hpa"),
           {**WINDOWS_LIKE, "net.ipv4.icmp_ratelimit": 0}, netbios="FILES", udp_firewall=True),
    Server("s3", True, "00:25:90:5e:00:03", "Super Micro Computer, Inc.", ("openssh", "mariadb", "snmpd", "ntpsec")),
    Server("s4", False, "3c:d9:2b:5e:00:04", "Hewlett Packard", ("nginx", "snmpd", "miniupnpd"), APPLIANCE_LIKE,
           mdns=True),
)
ROUTER_DAEMONS = ("dnsmasq",)  # the lab's DNS, as on many a real office router
WORKGROUP = "LAB"


def upstream_version(debian_version: str) -> str:
    """"1:9.2p1-2+deb12u10" -> "9.2p1": no epoch, no Debian revision, no repack suffix."""
    version = debian_version.split(":", 1)[-1].rsplit("-", 1)[0]
    for mark in ("+dfsg", "~", "+ds"):
        version = version.split(mark, 1)[0]
    return version


@cache  # servers share daemons: ask dpkg once per binary
def package_version(binary: str) -> str:
    """The upstream version of the Debian package that installed `binary`."""
    try:
        owner = subprocess.run(["dpkg-query", "-S", binary], capture_output=True, text=True, check=True)
        package = owner.stdout.split(":", 1)[0].split(",")[0].strip()
        shown = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise LabError(f"{binary} is not installed from a Debian package (run .ci/setup)") from exc
    return upstream_version(shown.stdout.strip())


def expected(daemons: tuple[str, ...]) -> dict[str, dict[str, dict[str, Any]]]:
    """What a scan should say about each port these daemons open, by protocol then port."""
    out: dict[str, dict[str, dict[str, Any]]] = {"tcp": {}, "udp": {}}
    for name in daemons:
        daemon = DAEMONS[name]
        version = package_version(daemon.binary)
        for proto, ports in (("tcp", daemon.tcp), ("udp", daemon.udp)):
            for port, (service, product, announced) in ports.items():
                out[proto][str(port)] = {"service": service, "product": product,
                                         "version": version if announced else None, "daemon": name}
    return out


def plan(prefix: str, scan_net: str, routed_net: str) -> list[dict[str, Any]]:
    """The servers' host entries, in the same shape as imitation hosts plus what they run."""
    hosts = []
    placed = {False: 0, True: 0}  # servers so far on the scanner's segment and behind the router
    for server in SERVERS:
        net = ipaddress.ip_network(routed_net if server.routed else scan_net)
        offset = SERVER_BASE + placed[server.routed]
        placed[server.routed] += 1
        services = expected(server.daemons)
        sysctls = {"net.ipv4.ip_default_ttl": 64, **server.sysctls}
        host: dict[str, Any] = {
            "name": server.name,
            "kind": "server",
            "netns": f"{prefix}-{server.name}",
            "ip": str(net[offset]),
            "mac": server.mac,
            "vendor": server.vendor,
            "ttl": sysctls["net.ipv4.ip_default_ttl"],
            "sysctls": sysctls,
            "os_family": "Linux",
            "tuned": bool(server.sysctls),
            "routed": server.routed,
            "daemons": list(server.daemons),
            "open": sorted(int(p) for p in services["tcp"]),
            "filtered": [],
            "banners": {},
            "services": services["tcp"],
            "udp": services["udp"],
            # UDP ports a firewall answers for, by the state a scan should report
            "udp_filtered": [UDP_REJECTED] if server.udp_firewall else [],
            "udp_silent": [UDP_DROPPED] if server.udp_firewall else [],
        }
        if server.mdns:
            host["mdns"] = f"{server.name}.local"
        if server.netbios:
            host["netbios"] = {"name": server.netbios, "workgroup": WORKGROUP}
        hosts.append(host)
    return hosts


def router_services() -> dict[str, dict[str, dict[str, Any]]]:
    """The router's expected services by protocol then port."""
    return expected(ROUTER_DAEMONS)
