"""The lab's hostile hosts (`netscand lab up --hostile`): two hosts on the scanner's segment that
misbehave on purpose, so tests can show that nothing a scanned host sends stops the daemon.

x1, the tarpit and frame attacker: nftables in its namespace redirects every TCP port to one
listener, so every port answers SYN-ACK (as LaBrea or a SYN proxy does), and what connects is
held in silence; while the scanner talks to the hostile hosts, attacker.py sends the scanner a
steady stream of malformed and forged frames (frames.py).
x2, the hostile services: ordinary open ports whose services misbehave, and UDP answers to the
scanner's name queries that loop or are oversized (hostile_services.py, answers.py, certs.py).

A tarpit is not profiled, so the hostile services live on a host of their own: behind the
tarpit they would never be asked anything.
"""

from __future__ import annotations

import ipaddress
from typing import Any

# Between the imitation hosts (.10 up to .159 at most: 150 of 200 on this segment) and the
# servers (.230 up), so no other lab host ever has these addresses.
HOSTILE_BASE = 220
# 0x06: locally administered like every lab MAC, but never the 0x02 the imitation hosts draw
# theirs from, so no seed can collide with these.
MACS = ("06:6e:73:00:00:01", "06:6e:73:00:00:02")
TARPIT_PORT = 9  # the one listener every redirected port lands on (x1)
TARPIT_BACKLOG = 65535
TARPIT_SYSCTLS = {"net.ipv4.ip_default_ttl": 64, "net.core.somaxconn": TARPIT_BACKLOG,
                  "net.ipv4.tcp_max_syn_backlog": TARPIT_BACKLOG, "net.ipv4.tcp_syncookies": 1}

FRAME_RATE = 200  # malformed or forged frames per second while the scanner is active
ACTIVE_HOLD_S = 10.0  # the attack goes on this long after the scanner's last frame to a hostile host
ECHO_RATE = 1000  # at most this many hostile SYN-ACKs per second answering the scanner's SYNs
DRIP_INTERVAL_S = 0.45  # just under the detector's 0.5 s idle gap, so only a deadline ends a read

DRIP_PORT, ENDLESS_PORT, DNS_PORT, HTTP_PORT, TLS_PORT, HUGE_TLS_PORT = 21, 25, 53, 80, 443, 8443
MDNS_PORT, NETBIOS_PORT, SNMP_PORT = 5353, 137, 161

SERVICES = {
    f"tcp/{DRIP_PORT}": f"drips an FTP-like greeting, one byte every {DRIP_INTERVAL_S} s, forever",
    f"tcp/{ENDLESS_PORT}": "an SMTP-like banner that never ends, sent as fast as the client reads",
    f"tcp/{DNS_PORT}": "DNS over TCP: a 65535-byte answer whose names are compression-pointer loops",
    f"tcp/{HTTP_PORT}": "HTTP: a page of many '<title' fragments, then a 64 KiB <title>",
    f"tcp/{TLS_PORT}": "TLS with an 85 kB certificate chain (a 66 kB leaf of 600 names and 200 subject "
                       "attributes, 8 intermediates, a root), under OpenSSL's 100 KiB limit; the same page inside",
    f"tcp/{HUGE_TLS_PORT}": "TLS with a 1 MB certificate chain (101 certificates), ten times OpenSSL's limit",
    f"udp/{MDNS_PORT}": "legacy-unicast mDNS answers with the query's id: pointer loops, pointer chains, "
                        "counts of 65535, lengths past the end, a 65507-byte datagram",
    f"udp/{NETBIOS_PORT}": "NetBIOS node status answers with the query's id: 255 names claimed in 20 bytes, "
                           "lengths past the end, a name loop, a 65507-byte datagram",
    f"udp/{SNMP_PORT}": "SNMP responses with the request's id: 10000-deep nesting, lengths past the end, "
                        "indefinite lengths, an OID of 5000 arcs, a 65507-byte datagram",
}


def _host(prefix: str, name: str, ip: str, mac: str) -> dict[str, Any]:
    return {"name": name, "kind": "hostile", "netns": f"{prefix}-{name}", "ip": ip, "mac": mac, "ttl": 64,
            "routed": False, "open": [], "filtered": [], "banners": {}}


def plan(prefix: str, scan_net: str) -> list[dict[str, Any]]:
    """The hostile hosts' entries in the truth, in the shape of the other hosts plus what each does."""
    net = ipaddress.ip_network(scan_net)
    tarpit = _host(prefix, "x1", str(net[HOSTILE_BASE]), MACS[0])
    tarpit.update({
        "role": "tarpit",
        "tarpit": True,  # "open" stays []: every one of the 65535 ports answers, none runs a service
        "sysctls": TARPIT_SYSCTLS,
        "listener": TARPIT_PORT,
        "does": ["answers SYN-ACK on every TCP port (nftables redirects each to one silent listener)",
                 f"sends the scanner ~{FRAME_RATE} malformed or forged frames/s while it talks to a "
                 f"hostile host (and {ACTIVE_HOLD_S:g} s after)",
                 f"answers up to {ECHO_RATE} of the scanner's SYNs/s with a second SYN-ACK whose TCP "
                 "options run past the frame"],
        "frames": {"rate_per_s": FRAME_RATE, "hold_s": ACTIVE_HOLD_S, "echo_per_s": ECHO_RATE},
    })
    services = _host(prefix, "x2", str(net[HOSTILE_BASE + 1]), MACS[1])
    services.update({
        "role": "services",
        "open": sorted(int(where.split("/")[1]) for where in SERVICES if where.startswith("tcp/")),
        "udp_ports": sorted(int(where.split("/")[1]) for where in SERVICES if where.startswith("udp/")),
        "does": dict(SERVICES),
    })
    return [tarpit, services]


def tarpit_ruleset() -> str:
    """Every TCP connection to the tarpit lands on its one listener, whatever the port: the
    kernel then answers SYN-ACK itself, and never RST first."""
    return ("table ip tarpit {\n chain prerouting {\n  type nat hook prerouting priority dstnat; policy accept;\n"
            f"  iifname \"eth0\" meta l4proto tcp redirect to :{TARPIT_PORT}\n }}\n}}\n")


def is_hostile(host: dict[str, Any]) -> bool:
    return host.get("kind") == "hostile"
