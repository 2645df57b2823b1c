"""The device endpoints (scope read): the inventory's devices, filtered and a page at a time, and
one device with its addresses, CVEs and history of changes."""

from __future__ import annotations

import ipaddress

from msgspec import UNSET
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from netscand.api.auth import Principal
from netscand.api.exports import device_pages, export_format, stream
from netscand.api.models import DeviceQuery
from netscand.api.problems import NOT_FOUND, Problem
from netscand.api.responses import JSONBody
from netscand.api.validate import query_as
from netscand.scan.exports import INVENTORY_COLUMNS, INVENTORY_PORT_COLUMNS, device_export
from netscand.scan.orchestrator import Orchestrator
from netscand.store import Store, devices
from netscand.store.devices import SEVERITY_RANKS, Filters

DEVICES = "/api/v1/devices"


def device_query(params: QueryParams) -> tuple[DeviceQuery, Filters]:
    """The query as its model and as the store's filters; 422 naming the parameter at fault."""
    q = query_as(params, DeviceQuery)
    given = {name: None if getattr(q, name) is UNSET else getattr(q, name) for name in q.__struct_fields__}
    port, protocol = _port(given["port"])
    filters = Filters(
        site_id=None if given["site_id"] is None else given["site_id"].lower(),
        network=_network(given["address"]), text=given["q"], port=port, protocol=protocol,
        service=given["service"], product=given["product"], os=given["os"],
        cve=None if given["cve"] is None else given["cve"].upper(),
        min_severity=None if given["min_severity"] is None else SEVERITY_RANKS[given["min_severity"]],
        seen_since=given["seen_since"], not_seen_since=given["not_seen_since"],
        present=None if given["present"] is None else given["present"] == "true")
    return q, filters


def _network(text: str | None) -> devices.Network | None:
    if text is None:
        return None
    try:
        return ipaddress.ip_network(text)
    except ValueError as exc:
        raise Problem.invalid("address", f"address must be an IP address or a CIDR block without host "
                                         f"bits, such as 198.18.0.0/24: {exc}") from None


def _port(text: str | None) -> tuple[int | None, str | None]:
    """(number, protocol or None) of `443` or `443/tcp` (the model checked the shape)."""
    if text is None:
        return None, None
    number, _, protocol = text.partition("/")
    if not 1 <= int(number) <= 65535:
        raise Problem.invalid("port", f"port must be 1-65535, optionally with /tcp or /udp, got {text!r}")
    return int(number), protocol or None


class DeviceEndpoints:
    def __init__(self, orchestrator: Orchestrator, store: Store) -> None:
        self.orchestrator, self.store = orchestrator, store

    async def list(self, request: Request, who: Principal) -> Response:
        q, filters = device_query(request.query_params)
        if fmt := export_format(q.format, request.query_params):
            writer = device_export(fmt.name, INVENTORY_COLUMNS, port_columns=INVENTORY_PORT_COLUMNS)
            return await stream(self.orchestrator.io, device_pages(self.store, filters), writer, fmt,
                                "netscand-devices")
        rows, total = await self.orchestrator.io.read(self.store.call, "cannot list devices", devices.page,
                                                      filters, q.page, q.per_page)
        return JSONBody({"devices": rows, "page": q.page, "per_page": q.per_page, "total": total})

    async def get(self, request: Request, who: Principal) -> Response:
        device_id = request.path_params["device_id"]
        device = await self.orchestrator.io.read(self.store.call, f"cannot read device {device_id}",
                                                 devices.get, device_id)
        if device is None:
            raise Problem(404, NOT_FOUND, "Device not found", f"no device with id {device_id[:100]!r}")
        return JSONBody(device)
