"""The site endpoints: create, list, read, rename and delete sites (GET needs scope read, the
others admin). A site's inventory is read through api/devices.py."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from netscand.api.auth import Principal
from netscand.api.body import read_json
from netscand.api.models import SiteQuery, SiteRequest
from netscand.api.problems import CONFLICT, NOT_FOUND, Problem
from netscand.api.responses import JSONBody
from netscand.api.validate import body_as, query_as
from netscand.scan.orchestrator import Orchestrator
from netscand.store import Store, sites

T = TypeVar("T")
SITES = "/api/v1/sites"
_UUID = re.compile("[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def location(site_id: str) -> str:
    return f"{SITES}/{site_id}"


def site_name(data: Any) -> str:
    """The name of a create or rename body; 422 naming `name` if it is not one."""
    name = body_as(data, SiteRequest).name
    # The pattern refuses control characters; Unicode's other invisible ones (format
    # characters such as U+200B, separators) only isprintable() knows.
    if not name.isprintable():
        raise Problem.invalid("name", f"name must be printable characters, got {name!r}")
    return name


class SiteEndpoints:
    def __init__(self, orchestrator: Orchestrator, store: Store) -> None:
        self.orchestrator, self.store = orchestrator, store

    async def create(self, request: Request, who: Principal) -> Response:
        name = site_name(await read_json(request))
        site = await self._named(self._write("cannot create the site", sites.create, name))
        return JSONBody(site, status_code=201, headers={"Location": location(site["id"])})

    async def list(self, request: Request, who: Principal) -> Response:
        q = query_as(request.query_params, SiteQuery)
        rows, total = await self._read("cannot list sites", sites.page, q.page, q.per_page)
        return JSONBody({"sites": rows, "page": q.page, "per_page": q.per_page, "total": total})

    async def get(self, request: Request, who: Principal) -> Response:
        site_id = _site_id(request)
        return JSONBody(_found(site_id, await self._read(f"cannot read site {site_id}", sites.get, site_id)))

    async def rename(self, request: Request, who: Principal) -> Response:
        site_id = _site_id(request)
        name = site_name(await read_json(request))
        renamed = await self._named(self._write(f"cannot rename site {site_id}", sites.rename, site_id, name))
        return JSONBody(_found(site_id, renamed))

    async def delete(self, request: Request, who: Principal) -> Response:
        site_id = _site_id(request)
        try:
            deleted = await self._write(f"cannot delete site {site_id}", sites.delete, site_id)
        except sites.SiteBusy as exc:
            raise Problem(409, CONFLICT, "Site in use",
                          f"site {site_id} has scans queued or running ({', '.join(exc.scan_ids)}): "
                          "stop them or let them end first") from None
        if not deleted:
            raise _not_found(site_id)
        return Response(status_code=204)

    async def _named(self, write: asyncio.Future[T]) -> T:
        try:
            return await write
        except sites.NameTaken as exc:
            raise Problem(409, CONFLICT, "Name taken", str(exc)) from None

    async def _read(self, doing: str, query: Callable[..., T], *args: Any) -> T:
        return await self.orchestrator.io.read(self.store.call, doing, query, *args)

    def _write(self, doing: str, change: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return self.orchestrator.io.write(self.store.call, doing, change, *args)


def _site_id(request: Request) -> str:
    """The path's site id in its one spelling (lower case); 404 for anything that is not one."""
    text = request.path_params["site_id"]
    if not _UUID.fullmatch(text):
        raise _not_found(text)
    return text.lower()


def _found(site_id: str, site: T | None) -> T:
    if site is None:
        raise _not_found(site_id)
    return site


def _not_found(site_id: str) -> Problem:
    return Problem(404, NOT_FOUND, "Site not found", f"no site with id {site_id[:100]!r}")
