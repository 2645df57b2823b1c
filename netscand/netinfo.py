"""Interfaces, routes and neighbours, read from netlink once per scan (never per packet).

Targets are routed by longest-prefix match over the main and local tables, which is what the
kernel does absent policy rules; looking up every address with RTM_GETROUTE would cost a netlink
round trip per host.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from pyroute2 import IPRoute

RTN_UNICAST, RTN_LOCAL = 1, 2
ARPHRD_LOOPBACK = 772


@dataclass(frozen=True)
class Route:
    """How one target is reached: out of which interface, from which address, via whom."""

    ifindex: int
    ifname: str
    src_ip: int
    src_mac: bytes
    gateway: int | None  # None: on-link (or loopback), resolved by ARP
    loopback: bool


class NoRoute(Exception):
    pass


@dataclass(frozen=True)
class _Entry:
    net: int
    plen: int
    ifindex: int
    gateway: int | None
    prefsrc: int | None
    local: bool


def _ip(text: str | None) -> int | None:
    return int(ipaddress.IPv4Address(text)) if text else None


class NetInfo:
    def __init__(self) -> None:
        with IPRoute() as ipr:
            links = {l["index"]: l for l in ipr.get_links()}
            addrs = ipr.get_addr(family=socket.AF_INET)
            raw = [r for t in (254, 255) for r in ipr.get_routes(family=socket.AF_INET, table=t)]
            self.neighbours = {
                _ip(n.get("dst")): bytes.fromhex(n.get("lladdr").replace(":", ""))
                for n in ipr.get_neighbours(family=socket.AF_INET)
                if n.get("lladdr") and n.get("dst") and n["state"] & 0x5E  # reachable/stale/delay/probe/permanent
            }
        self._names = {i: l.get("ifname") for i, l in links.items()}
        self._macs = {i: bytes.fromhex((l.get("address") or "00:00:00:00:00:00").replace(":", ""))
                      for i, l in links.items()}
        self._loopback = {i for i, l in links.items() if l["ifi_type"] == ARPHRD_LOOPBACK}
        self._up = {i for i, l in links.items() if l["flags"] & 1}
        self._first_addr: dict[int, int | None] = {}
        for a in addrs:
            self._first_addr.setdefault(a["index"], _ip(a.get("address")))
        entries = []
        for r in raw:
            if r["type"] not in (RTN_UNICAST, RTN_LOCAL) or r.get("oif") is None:
                continue
            plen = r["dst_len"]
            net = (_ip(r.get("dst")) or 0) & ((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF)
            entries.append(_Entry(net, plen, r.get("oif"), _ip(r.get("gateway")), _ip(r.get("prefsrc")),
                                  r["type"] == RTN_LOCAL))
        # Local routes win over main ones of the same length, as the local table is looked up first.
        self._entries = sorted(entries, key=lambda e: (-e.plen, not e.local))

    def route(self, ip: int) -> Route:
        for e in self._entries:
            if e.plen == 0 or (ip ^ e.net) >> (32 - e.plen) == 0:
                return self._route(e, ip)
        raise NoRoute(f"no route to {ipaddress.IPv4Address(ip)}")

    def _route(self, e: _Entry, ip: int) -> Route:
        ifindex = e.ifindex
        if e.local:
            # A local address is reached through loopback whatever interface holds it.
            ifindex = next(iter(sorted(self._loopback)), ifindex)
        if ifindex not in self._up:
            raise NoRoute(f"route to {ipaddress.IPv4Address(ip)} uses {self._names.get(ifindex)}, which is down")
        src = e.prefsrc or self._first_addr.get(ifindex)
        if src is None:
            raise NoRoute(f"interface {self._names.get(ifindex)} has no IPv4 address")
        loop = ifindex in self._loopback
        return Route(ifindex, self._names.get(ifindex, "?"), src, self._macs[ifindex],
                     None if loop else e.gateway, loop)

    def route_ranges(self, ranges: tuple[tuple[int, int], ...]) -> list[tuple[int, int, Route]]:
        """Split inclusive address ranges where the longest-prefix match changes, and route each
        piece once: a /16 behind one route costs one lookup, not 65536."""
        cuts = sorted({e.net for e in self._entries} | {e.net + (1 << (32 - e.plen)) for e in self._entries})
        out = []
        for start, end in ranges:
            inner = [c for c in cuts if start < c <= end]
            edges = [start, *inner, end + 1]
            for a, b in zip(edges, edges[1:]):
                out.append((a, b - 1, self.route(a)))
        return out
