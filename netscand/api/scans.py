"""The scan endpoints: thin adapters from HTTP to the orchestrator and back."""

from __future__ import annotations

from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response

from netscand.api.auth import Principal
from netscand.api.body import read_json
from netscand.api.exports import export_format, scan_export
from netscand.api.responses import JSONBody
from netscand.api.validate import idempotency_key, list_query, result_query, start_request
from netscand.scan.orchestrator import Orchestrator

SCANS = "/api/v1/scans"


def location(scan_id: str) -> str:
    return f"{SCANS}/{scan_id}"


class ScanEndpoints:
    """Each passes the caller's `viewer` on: a `scan` token reaches only its own scans."""

    def __init__(self, orchestrator: Orchestrator) -> None:
        self.orchestrator = orchestrator

    async def start(self, request: Request, who: Principal) -> Response:
        key = idempotency_key(request.headers.get("idempotency-key"))
        req = start_request(await read_json(request))
        status, created = await self.orchestrator.start(req, who.owner, key, remote=who.remote)
        headers = {"Location": location(status["id"])}
        if not created:
            # A replay answers like the first request did (202, same scan) and says it is one,
            # as Stripe's Idempotent-Replayed does; the body is the scan's current status.
            headers["Idempotent-Replayed"] = "true"
        return JSONBody(status, status_code=202, headers=headers)

    async def status(self, request: Request, who: Principal) -> Response:
        return JSONBody(await self.orchestrator.status(request.path_params["scan_id"], who.viewer))

    async def result(self, request: Request, who: Principal) -> Response:
        q = result_query(request.query_params)
        scan_id = request.path_params["scan_id"]
        if fmt := export_format(q.format, request.query_params):
            return await scan_export(self.orchestrator, scan_id, who.viewer, fmt)
        return JSONBody(await self.orchestrator.result(scan_id, who.viewer, q.page, q.per_page))

    async def rematch(self, request: Request, who: Principal) -> Response:
        q = result_query(request.query_params)
        scan_id = request.path_params["scan_id"]
        fmt = export_format(q.format, request.query_params)
        matched = await self.orchestrator.rematch(scan_id, who.viewer, q.page, 1 if fmt else q.per_page)
        return await scan_export(self.orchestrator, scan_id, who.viewer, fmt) if fmt else JSONBody(matched)

    async def stop(self, request: Request, who: Principal) -> Response:
        return JSONBody(await self.orchestrator.stop(request.path_params["scan_id"], who.viewer))

    async def delete(self, request: Request, who: Principal) -> Response:
        await self.orchestrator.delete(request.path_params["scan_id"], who.viewer)
        return Response(status_code=204)

    async def list(self, request: Request, who: Principal) -> Response:
        q = list_query(request.query_params)
        status, site_id = (None if v is UNSET else v for v in (q.status, q.site_id))
        return JSONBody(await self.orchestrator.list(q.page, q.per_page, status, site_id, who.viewer))
