"""The CVE data endpoint: which data scans are matched against (sources, counts, age), for a
dashboard to tell whether it is stale."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from netscand.api.auth import Principal
from netscand.api.responses import JSONBody
from netscand.scan.orchestrator import Orchestrator

CVE_STATUS = "/api/v1/cve/status"


class CveEndpoints:
    def __init__(self, orchestrator: Orchestrator) -> None:
        self.orchestrator = orchestrator

    async def status(self, request: Request, who: Principal) -> Response:
        return JSONBody(await self.orchestrator.cve_status())
