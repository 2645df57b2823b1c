"""The application: routes with the scope each needs, error handlers, the access log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from netscand.api import openapi
from netscand.api.access import AccessLog, note
from netscand.api.auth import Principal, Scope, TokenVerifier, authenticate, authorize
from netscand.api.problems import Problem
from netscand.api.responses import JSON, JSONBody
from netscand.api.scans import SCANS, ScanEndpoints
from netscand.scan.orchestrator import Orchestrator, ScanError

if TYPE_CHECKING:
    from netscand.store import Store

Endpoint = Callable[[Request, Principal], Awaitable[Response]]


def guarded(endpoint: Endpoint, needed: Scope, tokens: TokenVerifier) -> Callable[[Request], Awaitable[Response]]:
    """`endpoint` behind authentication and a scope check; it is handed the principal."""
    async def handle(request: Request) -> Response:
        who = authenticate(request, tokens)
        note(request.scope, owner=who.owner)
        authorize(who, needed)
        return await endpoint(request, who)

    handle.__name__ = endpoint.__name__
    return handle


def create_app(orchestrator: Orchestrator, store: Store) -> Starlette:
    scans = ScanEndpoints(orchestrator)
    document = orjson.dumps(openapi.document())

    async def healthz(request: Request) -> Response:
        return JSONBody({"status": "ok"})

    async def openapi_json(request: Request) -> Response:
        return Response(document, media_type=JSON)

    routes = [
        # Before /{scan_id}: POST …/start is the start route, never a scan called "start".
        Route(f"{SCANS}/start", guarded(scans.start, "scan", store), methods=["POST"]),
        Route(f"{SCANS}/{{scan_id}}", guarded(scans.status, "read", store), methods=["GET"]),
        Route(f"{SCANS}/{{scan_id}}/result", guarded(scans.result, "read", store), methods=["GET"]),
        Route(f"{SCANS}/{{scan_id}}/stop", guarded(scans.stop, "scan", store), methods=["POST"]),
        Route(SCANS, guarded(scans.list, "read", store), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/api/v1/openapi.json", openapi_json, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(AccessLog)],
        exception_handlers={
            Problem: _problem,
            ScanError: _scan_error,
            HTTPException: _http_error,
            Exception: _crash,
        },
    )


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.response()


async def _scan_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ScanError)
    return Problem.from_scan_error(exc).response()


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no route) and 405 (route without this method), as problems."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 404:
        detail = f"no route matches {path}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        detail = f"{request.method} is not allowed on {path}; allowed: {allowed}"
    else:
        detail = str(exc.detail)
    return Problem.plain(exc.status_code, detail, headers=exc.headers).response()


async def _crash(request: Request, exc: Exception) -> Response:
    # Reached only if AccessLog itself failed; everything else it catches first.
    return Problem.plain(500, "internal error; the daemon's log has the details").response()
