"""Builds the lab's namespaces, links, addresses and routes from its truth.

Every veth is created with its peer placed straight into the peer's namespace (IFLA_NET_NS_FD),
so no lab interface ever exists in the host namespace, even for a moment.
"""

from __future__ import annotations

import shlex
from typing import Any

from pyroute2 import IPRoute

from netscand.lab import hostile, namespaces
from netscand.lab.truth import (
    ROUTED_NET,
    ROUTER_IPS,
    ROUTER_MACS,
    SCAN_NET,
    WIDE_ROUTED_NET,
)

SCAN_IF = "scan0"
SCAN_PORT = "s-scan"  # the scanner's port on the bridge; the loss rules hook it
RELAY_IFS = ("r0", "r1")  # scanner side, bridge side
ROUTER_PORTS = ("rt0", "rt1")


def bridge_ns(prefix: str) -> str:
    return f"{prefix}-br"


def relay_ns(prefix: str) -> str:
    return f"{prefix}-rl"


def namespace_names(truth: dict[str, Any]) -> list[str]:
    prefix = truth["prefix"]
    names = [truth["scanner"]["netns"], bridge_ns(prefix), truth["router"]["netns"]]
    if truth["delay_ms"] > 0:
        names.append(relay_ns(prefix))
    return names + [h["netns"] for h in truth["hosts"]]


def build(truth: dict[str, Any]) -> None:
    for name in namespace_names(truth):
        namespaces.create(name)
    _create_links(truth)
    # Before any link is up, so no IPv6 chatter or offloaded checksum ever reaches the wire.
    namespaces.run_scripts(_config_scripts(truth))
    _bring_up(truth)


def _veth(ipr: IPRoute, ifname: str, peer_ns: str, peer_ifname: str, peer_mac: str | None = None) -> None:
    with namespaces.ns_fd(peer_ns) as fd:
        peer: dict[str, Any] = {"ifname": peer_ifname, "net_ns_fd": fd}
        if peer_mac:
            peer["address"] = peer_mac
        ipr.link("add", ifname=ifname, kind="veth", peer=peer)


def _create_links(truth: dict[str, Any]) -> None:
    prefix, scan_ns, rt_ns = truth["prefix"], truth["scanner"]["netns"], truth["router"]["netns"]
    with IPRoute(netns=bridge_ns(prefix), flags=0) as ipr:
        for bridge in ("br0", "br1"):
            ipr.link("add", ifname=bridge, kind="bridge")
        if truth["delay_ms"] <= 0:
            _veth(ipr, SCAN_PORT, scan_ns, SCAN_IF, truth["scanner"]["mac"])
        for port, ifname, mac in zip(ROUTER_PORTS, ("eth0", "eth1"), ROUTER_MACS, strict=True):
            _veth(ipr, port, rt_ns, ifname, mac)
        for host in truth["hosts"]:
            _veth(ipr, host["name"], host["netns"], "eth0", host["mac"])
    if truth["delay_ms"] > 0:
        with IPRoute(netns=relay_ns(prefix), flags=0) as ipr:
            _veth(ipr, RELAY_IFS[0], scan_ns, SCAN_IF, truth["scanner"]["mac"])
            _veth(ipr, RELAY_IFS[1], bridge_ns(prefix), SCAN_PORT)


def _script(sysctls: dict[str, str | int], veths: list[str], extra: str = "") -> str:
    # IPv6 is off everywhere: the lab is IPv4 only and router/neighbour solicitations would be noise.
    sysctls = {"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1, **sysctls}
    lines = [shlex.join(["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in sysctls.items())])]
    # Offloaded checksums would reach AF_PACKET readers (the scanner, the relay) unfilled.
    lines += [shlex.join(["ethtool", "-K", ifname, "tx", "off"]) + " >/dev/null" for ifname in veths]
    return "\n".join(lines) + "\n" + extra


def _ports(ports: list[int]) -> str:
    return "{ " + ", ".join(map(str, ports)) + " }"


def _filter_ruleset(host: dict[str, Any]) -> str | None:
    """The host's firewall: TCP ports dropped; UDP ports rejected with ICMP admin-prohibited
    (type 3 code 13) or dropped; None when it filters nothing."""
    rules = [f"  {proto} dport {_ports(ports)} {action}" for proto, ports, action in (
        ("tcp", host["filtered"], "drop"),
        ("udp", host.get("udp_filtered", []), "reject with icmp type admin-prohibited"),
        ("udp", host.get("udp_silent", []), "drop")) if ports]
    if not rules:
        return None
    return ("table inet lab {\n chain input {\n  type filter hook input priority filter; policy accept;\n"
            + "\n".join(rules) + "\n }\n}\n")


def _config_scripts(truth: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    prefix, relayed = truth["prefix"], truth["delay_ms"] > 0
    bridge_ports = [SCAN_PORT, *ROUTER_PORTS, *(h["name"] for h in truth["hosts"])]
    # bridge-nf-call-* only exist once br_netfilter is active in the namespace, hence the test.
    no_brnf = ("for t in iptables ip6tables arptables; do f=/proc/sys/net/bridge/bridge-nf-call-$t; "
               "if [ -e $f ]; then echo 0 > $f; fi; done\n")
    scripts: dict[str, tuple[str, str | None]] = {
        truth["scanner"]["netns"]: (_script({}, [SCAN_IF]), None),
        bridge_ns(prefix): (_script({}, bridge_ports, no_brnf), None),
        truth["router"]["netns"]: (_script({"net.ipv4.ip_forward": 1}, ["eth0", "eth1"]), None),
    }
    if relayed:
        scripts[relay_ns(prefix)] = (_script({}, list(RELAY_IFS)), None)
    for host in truth["hosts"]:
        sysctls = host.get("sysctls", {"net.ipv4.ip_default_ttl": host["ttl"]})
        ruleset = hostile.tarpit_ruleset() if host.get("tarpit") else _filter_ruleset(host)
        scripts[host["netns"]] = (_script(sysctls, ["eth0"], "nft -f -\n" if ruleset else ""), ruleset)
    return scripts


def _up(ipr: IPRoute, ifname: str, address: str | None = None, master: str | None = None) -> None:
    index = ipr.link_lookup(ifname=ifname)[0]
    if address:
        ip, plen = address.split("/")
        ipr.addr("add", index=index, address=ip, prefixlen=int(plen))
    if master:
        ipr.link("set", index=index, master=ipr.link_lookup(ifname=master)[0])
    ipr.link("set", index=index, state="up")


def _bring_up(truth: dict[str, Any]) -> None:
    prefix = truth["prefix"]
    scan_plen, routed_plen = SCAN_NET.split("/")[1], ROUTED_NET.split("/")[1]
    with IPRoute(netns=bridge_ns(prefix), flags=0) as ipr:
        for ifname in ("lo", "br0", "br1"):
            _up(ipr, ifname)
        _up(ipr, SCAN_PORT, master="br0")
        _up(ipr, ROUTER_PORTS[0], master="br0")
        _up(ipr, ROUTER_PORTS[1], master="br1")
        for host in truth["hosts"]:
            _up(ipr, host["name"], master="br1" if host["routed"] else "br0")
    if truth["delay_ms"] > 0:
        with IPRoute(netns=relay_ns(prefix), flags=0) as ipr:
            for ifname in ("lo", *RELAY_IFS):
                _up(ipr, ifname)
    wide = truth.get("wide_routed", False)  # absent from the state files of labs built before it
    with IPRoute(netns=truth["router"]["netns"], flags=0) as ipr:
        _up(ipr, "lo")
        _up(ipr, "eth0", f"{ROUTER_IPS[0]}/{scan_plen}")
        _up(ipr, "eth1", f"{ROUTER_IPS[1]}/{routed_plen}")
        if wide:
            # The rest of the /16 is a summary route to a discard interface, as a router that
            # announces an aggregate has (Cisco's Null0): dead addresses are dropped without a
            # word, so a scanner learns nothing from them but silence. Dead addresses of the
            # connected /24 still cost the router an ARP miss and an ICMP host unreachable.
            ipr.route("add", dst=WIDE_ROUTED_NET, type="blackhole")
    # Each endpoint gets only its on-link route plus one specific route through the router:
    # nothing in the lab has a default route, so nothing can be sent anywhere else.
    with IPRoute(netns=truth["scanner"]["netns"], flags=0) as ipr:
        _up(ipr, "lo")
        _up(ipr, SCAN_IF, f"{truth['scanner']['ip']}/{scan_plen}")
        ipr.route("add", dst=WIDE_ROUTED_NET if wide else ROUTED_NET, gateway=ROUTER_IPS[0])
    for host in truth["hosts"]:
        with IPRoute(netns=host["netns"], flags=0) as ipr:
            _up(ipr, "lo")
            _up(ipr, "eth0", f"{host['ip']}/{routed_plen if host['routed'] else scan_plen}")
            if host["routed"]:
                ipr.route("add", dst=SCAN_NET, gateway=ROUTER_IPS[1])
