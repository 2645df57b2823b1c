"""The change endpoints (scope read): what completed scans changed in the inventory, per scan or
per site since a time, and the diff of any two completed scans. A scan the caller may not see
answers 404, as GET /api/v1/scans/{scan_id} does."""

from __future__ import annotations

from typing import Any

from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response

from netscand.api.auth import Principal
from netscand.api.models import ChangesQuery, DiffQuery, ScanChangesQuery
from netscand.api.problems import Problem
from netscand.api.responses import JSONBody
from netscand.api.validate import query_as
from netscand.scan.changes import Diff
from netscand.scan.errors import not_found
from netscand.scan.orchestrator import Orchestrator
from netscand.store import Store, changes

CHANGES = "/api/v1/changes"


class ChangeEndpoints:
    def __init__(self, orchestrator: Orchestrator, store: Store) -> None:
        self.orchestrator = orchestrator
        self.store = store
        self.diff = Diff(store, orchestrator.io)

    async def of_scan(self, request: Request, who: Principal) -> Response:
        q = query_as(request.query_params, ScanChangesQuery)
        scan_id = request.path_params["scan_id"]
        await self.orchestrator.status(scan_id, who.viewer)  # 404 for a scan the caller can't see
        found, total = await self._read(changes.of_scan, scan_id, q.page, q.per_page)
        return JSONBody({"changes": found, "page": q.page, "per_page": q.per_page, "total": total})

    async def list(self, request: Request, who: Principal) -> Response:
        q = query_as(request.query_params, ChangesQuery)
        site_id = None if q.site_id is UNSET else q.site_id.lower()
        since = None if q.since is UNSET else q.since
        found, total = await self._read(changes.listing, site_id, since, q.page, q.per_page)
        return JSONBody({"changes": found, "page": q.page, "per_page": q.per_page, "total": total})

    async def between(self, request: Request, who: Principal) -> Response:
        q = query_as(request.query_params, DiffQuery)
        if q.against is UNSET:
            raise Problem.invalid("against", "against is required: the id of the scan to compare with")
        scan = await self._scan(request.path_params["scan_id"], who)
        against = await self._scan(q.against.lower(), who)
        found = await self.diff.between(scan, against)
        page = found[(q.page - 1) * q.per_page:q.page * q.per_page]
        return JSONBody({"scan_id": scan["id"], "against": against["id"], "changes": page, "page": q.page,
                         "per_page": q.per_page, "total": len(found)})

    async def _scan(self, scan_id: str, who: Principal) -> dict[str, Any]:
        """The scan's stored row (its options and CVE match too), if the caller may see it."""
        await self.orchestrator.status(scan_id, who.viewer)
        scan = await self.orchestrator.persist.scan(scan_id)
        if scan is None:
            raise not_found(scan_id)  # deleted meanwhile
        return scan

    async def _read(self, query: Any, *args: Any) -> tuple[list[dict[str, Any]], int]:
        return await self.orchestrator.io.read(self.store.call, "cannot read the changes", query, *args)
