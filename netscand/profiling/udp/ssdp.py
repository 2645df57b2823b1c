"""SSDP: a unicast M-SEARCH for the root device (UPnP Device Architecture 2.0, section 1.3.2),
answered with an HTTPU 200 whose SERVER header names the UPnP stack: MiniUPnPd, libupnp, ..."""

from __future__ import annotations

from netscand.profiling.headers import head
from netscand.profiling.services import upnp
from netscand.profiling.services.base import ServiceInfo, os_hint

name = "ssdp"
ports = frozenset({1900})
any_source_port = False

# upnp:rootdevice: one answer per device, where ssdp:all brings one per service it offers.
_SEARCH = (b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n"
           b"MX: 1\r\nST: upnp:rootdevice\r\n\r\n")


def requests(ip: str, ident: int) -> tuple[bytes, ...]:
    return (_SEARCH,)  # no id to carry: the connected socket hears only the host's port


def parse(data: bytes, ident: int) -> ServiceInfo | None:
    start, fields = head(data)
    if not start.upper().startswith("HTTP/1.1 200"):
        return None
    extra: dict[str, object] = {k: fields[k] for k in ("server", "location", "st") if k in fields}
    extra.update(os_hint(fields.get("server")))
    found = upnp.server_product(fields.get("server", ""))
    if found is None:
        return ServiceInfo("ssdp", banner=fields.get("server"), extra=extra)
    product, version, product_cpe = found
    return ServiceInfo("ssdp", product, version, product_cpe, fields.get("server"), extra)
