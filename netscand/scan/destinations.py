"""Where a webhook may send: its URL read, its host resolved, and every address checked against
the config's webhooks.allowed_destinations.

A token holder chooses the URL, so without this the daemon would call whatever it is told to,
its own network and loopback included. The check is made when a webhook is created or changed
and again at every attempt, and an attempt connects to the address that was checked (the URL's
name goes in Host and TLS SNI): a name re-pointed after creation (DNS rebinding) is checked as
it resolves then, never trusted from before.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
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
    url: httpx.URL  # the URL with the checked address as its host: what is connected to
    host: str  # the URL's own host, for Host and SNI
    address: Address


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
    `allowed`; the first address is the one to connect to."""
    if not allowed:
        raise DestinationError(403, "webhooks are off: webhooks.allowed_destinations is empty. To send "
                               "webhooks, list the CIDR blocks of their receivers in " + CONFIG_HINT)
    url = parse(text)
    addresses = await _addresses(url)
    blocks = [ipaddress.ip_network(block, strict=False) for block in allowed]
    for address in addresses:
        if not any(address.version == block.version and address in block for block in blocks):
            subject = str(address) if _literal(url.host) else f"{url.host} resolves to {address}, which"
            raise DestinationError(403, f"{subject} is outside webhooks.allowed_destinations "
                                   f"({', '.join(allowed)}); to allow it, add a block holding it (such as "
                                   f"{ipaddress.ip_network(address)}) to allowed_destinations in {CONFIG_HINT}")
    return Destination(url.copy_with(host=str(addresses[0])), url.host, addresses[0])


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
    """An IPv4-mapped IPv6 address (::ffff:127.0.0.1) reaches its IPv4 address: checked as that."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
