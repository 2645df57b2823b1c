"""Where a webhook may send: its URL read, its host resolved, and every address checked against
the config's webhooks.allowed_destinations.

A token holder chooses the URL, so without this the daemon would call whatever it is told to,
its own network and loopback included. The check is made when a webhook is created or changed
and again at every attempt, and an attempt connects to the address that was checked (the URL's
name goes in Host and TLS SNI): a name re-pointed after creation (DNS rebinding) is checked as
it resolves then, never trusted from before.

The host's own addresses are read from the kernel at every check too (a netlink dump of its
local routing table, a millisecond or two on the executor beside an attempt that connects and
shakes hands): a cache would let an address added since (a new bridge, a VPN) in for its life.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from pyroute2 import IPRoute

from netscand.netinfo import RTN_LOCAL

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Refused even inside the allowlist's blocks, unless a block lies inside the range itself (the
# admin named it, narrowly): 0.0.0.0/0 must not open the daemon's own loopback listeners, the
# cloud metadata service at 169.254.169.254, or a multicast group.
SPECIAL: tuple[tuple[str, Network], ...] = tuple((kind, ipaddress.ip_network(net)) for kind, net in (
    ("unspecified", "0.0.0.0/8"), ("loopback", "127.0.0.0/8"), ("link-local", "169.254.0.0/16"),
    ("multicast", "224.0.0.0/4"), ("broadcast", "255.255.255.255/32"), ("unspecified", "::/128"),
    ("loopback", "::1/128"), ("link-local", "fe80::/10"), ("multicast", "ff00::/8")))
# Reserved as the special ranges are: a wide block (0.0.0.0/0, the LAN's /24) would otherwise
# open the services bound on the host's own LAN address, its docker0, its VPN's.
OWN = "an address of this host"
LOCAL_TABLE = 255  # the kernel's table of what the host delivers to itself
ANY = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}  # a default route's destination, which it leaves out
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAME = re.compile(r"(?=.{1,253}\.?$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?",
                   re.ASCII)
CONFIG_HINT = "the [webhooks] section of the daemon's config file, then reload the daemon"


class DestinationError(Exception):
    """A URL refused: `status` 422 for one that is no URL of ours or does not resolve, 403 for
    one outside the allowlist."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class Destination:
    url: httpx.URL  # as the webhook has it
    host: str  # the URL's own host, for Host and SNI
    addresses: tuple[Address, ...]  # every one checked, in the resolver's order: each is tried in turn

    def at(self, address: Address) -> httpx.URL:
        """The URL with `address` as its host: what an attempt connects to."""
        return self.url.copy_with(host=str(address))


def parse(text: str) -> httpx.URL:
    """`text` as an http(s) URL with a host that is an IP address or a DNS name."""
    try:
        url = httpx.URL(text)
        port = url.port
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise DestinationError(422, f"url is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise DestinationError(422, "url must be an http:// or https:// URL")
    if _literal(url.host) is None and not _NAME.fullmatch(url.host):
        raise DestinationError(422, f"url's host {url.host[:80]!r} is neither an IP address nor a DNS name")
    if port is not None and not 0 < port < 65536:
        raise DestinationError(422, f"url's port {port} is out of range")
    return url


async def resolve(text: str, allowed: Sequence[str]) -> Destination:
    """The URL's host resolved (off the event loop), every address it has checked against
    `allowed`."""
    if not allowed:
        raise DestinationError(403, "webhooks are off: webhooks.allowed_destinations is empty. To send "
                               "webhooks, list the CIDR blocks of their receivers in " + CONFIG_HINT)
    url = parse(text)
    addresses = await _addresses(url)
    blocks = [ipaddress.ip_network(block, strict=False) for block in allowed]
    reserved = [*SPECIAL, *((OWN, net) for net in await asyncio.to_thread(local_networks))]
    for address in addresses:
        refusal = _refusal(address, blocks, reserved)
        if refusal is not None:
            subject = str(address) if _literal(url.host) else f"{url.host} resolves to {address}, which"
            raise DestinationError(403, f"{subject} is outside webhooks.allowed_destinations ({', '.join(allowed)})"
                                   f"{refusal}; to allow it, add a block holding it (such as "
                                   f"{ipaddress.ip_network(address)}) to allowed_destinations in {CONFIG_HINT}")
    return Destination(url, url.host, tuple(addresses))


def local_networks() -> list[Network]:
    """What this host takes as its own, in the namespace it runs in: its addresses (each a /32
    or /128) and any range routed to itself (AnyIP), as the kernel's local table has them. A
    local route without a destination (`local default`) makes every address of its family the
    host's own. Loopback is left to its own special range, so that `127.0.0.0/8` listed opens
    all of it, 127.0.0.1 included, as an admin who lists it means."""
    with IPRoute() as ipr:
        routes = [route for family in (socket.AF_INET, socket.AF_INET6)
                  for route in ipr.get_routes(family=family, table=LOCAL_TABLE)]
    networks = [ipaddress.ip_network(f"{route.get('dst') or ANY[route['family']]}/{route['dst_len']}", strict=False)
                for route in routes if route["type"] == RTN_LOCAL]
    return [net for net in networks if not net.is_loopback]


def _refusal(address: Address, blocks: Sequence[Network],
             reserved: Sequence[tuple[str, Network]]) -> str | None:
    """None if `address` may be sent to, else what to add to "outside the allowlist". An address
    in a reserved range (a special one, or this host's own) is allowed only by a block inside
    the narrowest such range: 0.0.0.0/0 opens none, the LAN's /24 not the host's own address on
    it, nor fe80::/64 the host's own link-local address (its /128 lies inside fe80::/10)."""
    holding = [block for block in blocks if block.version == address.version and address in block]
    ranges = [(kind, net) for kind, net in reserved if net.version == address.version and address in net]
    if not ranges:
        return None if holding else ""
    kind, net = max(ranges, key=lambda found: found[1].prefixlen)  # the first of equals: a special one's kind
    if any(block.subnet_of(net) for block in holding):  # type: ignore[arg-type]  # of one version
        return None
    return f": it is {kind}, which only a block inside {net} opens"


async def _addresses(url: httpx.URL) -> list[Address]:
    literal = _literal(url.host)
    if literal is not None:
        return [literal]
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        # The loop's getaddrinfo runs in its executor: a slow resolver waits there, not here.
        infos = await asyncio.get_running_loop().getaddrinfo(url.host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DestinationError(422, f"url's host {url.host} does not resolve: {exc}") from None
    found = list(dict.fromkeys(_plain(ipaddress.ip_address(info[4][0].split("%")[0])) for info in infos))
    if not found:
        raise DestinationError(422, f"url's host {url.host} resolves to no address")
    return found


def _literal(host: str) -> Address | None:
    try:
        return _plain(ipaddress.ip_address(host))
    except ValueError:
        return None


def _plain(address: Address) -> Address:
    """The IPv4 address inside an IPv6 one that carries one to it (IPv4-mapped ::ffff:0:0/96,
    IPv4-compatible ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16): checked, and connected to, as
    that IPv4 address, so no IPv6 spelling of 127.0.0.1 passes for another address."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    embedded = address.ipv4_mapped or address.sixtofour
    if embedded is not None:
        return embedded
    if address in NAT64 or (address in COMPATIBLE and int(address) > 1):  # ::1 and :: are IPv6's own
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address
