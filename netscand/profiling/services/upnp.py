"""UPnP SERVER strings: "<OS>/<version> UPnP/<version> <product>/<version>" (UPnP Device
Architecture 2.0, section 1.1.3), as SSDP answers and UPnP devices' HTTP servers send them.

The product is the token after "UPnP/x": the first token names the operating system, which
an HTTP parser would otherwise take for the product ("Debian/12 UPnP/1.1 MiniUPnPd/2.3.1").
"""

from __future__ import annotations

import re

from netscand.profiling.services.base import cpe, token

# product (lowercased) -> (product as vendors write it, CPE vendor, CPE product)
_PRODUCTS = {
    "miniupnpd": ("MiniUPnPd", "miniupnp_project", "miniupnpd"),
    "libupnp": ("libupnp", "libupnp_project", "libupnp"),
    "portable sdk for upnp devices": ("libupnp", "libupnp_project", "libupnp"),
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._+-]{0,63}")
_MAX_TOKENS = 16  # a SERVER header has three; the rest of a longer one is not read


def server_product(server: str) -> tuple[str | None, str | None, str | None] | None:
    """(product, version, cpe) from a UPnP SERVER string, or None if it is not one."""
    words = server[:512].split(None, _MAX_TOKENS)[:_MAX_TOKENS]
    marker = next((i for i, w in enumerate(words) if w.lower().startswith("upnp/")), None)
    if marker is None or marker + 1 >= len(words):
        return None
    # The product's name may have spaces ("Portable SDK for UPnP devices/1.6.19"); a comment
    # may follow its version ("Sonos/70.3-35220 (ZPS1)").
    name, _, rest = " ".join(words[marker + 1 :]).partition("/")
    version = token(rest)
    known = _PRODUCTS.get(name.lower())
    if known:
        return known[0], version, cpe(known[1], known[2], version)
    plain = _NAME.fullmatch(name)
    return (plain.group(0) if plain else None), version, None
