"""The application: routes with the scope each needs, error handlers, the access log.

Nothing here calls the store on the event loop: token checks, metrics and readiness read it on
the store's reader threads (a locked database must stall one request, not the loop).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from netscand.api import openapi, ready
from netscand.api.access import AccessLog, note
from netscand.api.auth import Principal, Scope, TokenVerifier, authenticate, authorize
from netscand.api.changes import CHANGES, ChangeEndpoints
from netscand.api.cve import CVE_STATUS, CveEndpoints
from netscand.api.devices import DEVICES, DeviceEndpoints
from netscand.api.events import EVENTS, EventEndpoints
from netscand.api.listener import listener_of
from netscand.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from netscand.api.metrics import Metrics
from netscand.api.problems import NOT_READY, Problem
from netscand.api.responses import JSON, JSONBody
from netscand.api.scans import SCANS, ScanEndpoints
from netscand.api.sites import SITES, SiteEndpoints
from netscand.api.schedules import SCHEDULES, ScheduleEndpoints
from netscand.api.throttle import AuthThrottle
from netscand.api.webhooks import WEBHOOKS, WebhookEndpoints
from netscand.scan.errors import ScanError
from netscand.scan.orchestrator import Orchestrator
from netscand.store import StoreError
from netscand.store.threads import StoreThreads

if TYPE_CHECKING:
    from netscand.store import Store

Endpoint = Callable[[Request, Principal], Awaitable[Response]]


class Guard:
    """Authentication and a scope check in front of endpoints, with the TLS listener's
    authentication failures throttled per client address."""

    def __init__(self, tokens: TokenVerifier, io: StoreThreads) -> None:
        self.tokens = tokens
        self.io = io
        self.throttle = AuthThrottle()

    def __call__(self, endpoint: Endpoint, needed: Scope) -> Callable[[Request], Awaitable[Response]]:
        """`endpoint` behind the guard; it is handed the principal."""
        async def handle(request: Request) -> Response:
            who = await self._authenticate(request)
            note(request.scope, owner=who.owner)
            authorize(who, needed)
            return await endpoint(request, who)

        handle.__name__ = endpoint.__name__
        return handle

    async def _authenticate(self, request: Request) -> Principal:
        try:
            if listener_of(request.scope) == "unix":
                return authenticate(request, self.tokens)  # the socket needs no token: no store call
            return await self.io.read(authenticate, request, self.tokens)
        except Problem as exc:
            # Only the TLS listener can fail to authenticate; there a client always has an address.
            if exc.status == 401 and listener_of(request.scope) == "tcp" and request.client:
                self.throttle.failed(request.client.host, time.monotonic())
            raise


def create_app(orchestrator: Orchestrator, store: Store) -> Starlette:
    scans = ScanEndpoints(orchestrator)
    cves = CveEndpoints(orchestrator)
    site_routes, device_routes = SiteEndpoints(orchestrator, store), DeviceEndpoints(orchestrator, store)
    events = EventEndpoints(orchestrator)
    change_routes = ChangeEndpoints(orchestrator, store)
    webhooks = WebhookEndpoints(orchestrator, store)
    schedules = ScheduleEndpoints(orchestrator, store)
    engine = orchestrator.health
    metrics = Metrics(store, engine)
    guarded = Guard(store, orchestrator.io)
    document = orjson.dumps(openapi.document())

    async def healthz(request: Request) -> Response:
        return JSONBody({"status": "ok"})

    async def readyz(request: Request) -> Response:
        found = await orchestrator.io.read(ready.checks, store, engine)
        trouble = {part: why for part, why in found.items() if why != ready.OK}
        if trouble:
            raise Problem(503, NOT_READY, "Not ready",
                          "not ready: " + "; ".join(f"{part}: {why}" for part, why in trouble.items()),
                          extensions={"checks": found})
        return JSONBody({"status": "ready", "checks": found})

    async def metrics_text(request: Request, who: Principal) -> Response:
        return Response(await orchestrator.io.read(metrics.render), media_type=METRICS_CONTENT_TYPE)

    async def openapi_json(request: Request) -> Response:
        return Response(document, media_type=JSON)

    routes = [
        # Before /{scan_id}: POST …/start is the start route, never a scan called "start".
        Route(f"{SCANS}/start", guarded(scans.start, "scan"), methods=["POST"]),
        # One route for both methods, so that a 405 there names both in Allow.
        Route(f"{SCANS}/{{scan_id}}", by_method(GET=guarded(scans.status, "read"),
                                                DELETE=guarded(scans.delete, "scan")),
              methods=["GET", "DELETE"]),
        Route(f"{SCANS}/{{scan_id}}/result", guarded(scans.result, "read"), methods=["GET"]),
        Route(f"{SCANS}/{{scan_id}}/stop", guarded(scans.stop, "scan"), methods=["POST"]),
        Route(f"{SCANS}/{{scan_id}}/rematch", guarded(scans.rematch, "scan"), methods=["POST"]),
        Route(SCANS, guarded(scans.list, "read"), methods=["GET"]),
        Route(f"{SCANS}/{{scan_id}}/events", guarded(events.scan, "read"), methods=["GET"]),
        Route(EVENTS, guarded(events.all, "read"), methods=["GET"]),
        Route(CVE_STATUS, guarded(cves.status, "read"), methods=["GET"]),
        Route(WEBHOOKS, by_method(GET=guarded(webhooks.list, "admin"), POST=guarded(webhooks.create, "admin")),
              methods=["GET", "POST"]),
        Route(f"{WEBHOOKS}/{{webhook_id}}", by_method(GET=guarded(webhooks.get, "admin"),
                                                      PATCH=guarded(webhooks.update, "admin"),
                                                      DELETE=guarded(webhooks.delete, "admin")),
              methods=["GET", "PATCH", "DELETE"]),
        Route(f"{WEBHOOKS}/{{webhook_id}}/deliveries", guarded(webhooks.deliveries, "admin"), methods=["GET"]),
        Route(SCHEDULES, by_method(GET=guarded(schedules.list, "read"), POST=guarded(schedules.create, "scan")),
              methods=["GET", "POST"]),
        Route(f"{SCHEDULES}/{{schedule_id}}", by_method(GET=guarded(schedules.get, "read"),
                                                        PATCH=guarded(schedules.update, "scan"),
                                                        DELETE=guarded(schedules.delete, "scan")),
              methods=["GET", "PATCH", "DELETE"]),
        Route(SITES, by_method(GET=guarded(site_routes.list, "read"), POST=guarded(site_routes.create, "admin")),
              methods=["GET", "POST"]),
        Route(f"{SITES}/{{site_id}}", by_method(GET=guarded(site_routes.get, "read"),
                                                PATCH=guarded(site_routes.rename, "admin"),
                                                DELETE=guarded(site_routes.delete, "admin")),
              methods=["GET", "PATCH", "DELETE"]),
        Route(DEVICES, guarded(device_routes.list, "read"), methods=["GET"]),
        Route(f"{DEVICES}/{{device_id}}", guarded(device_routes.get, "read"), methods=["GET"]),
        Route(f"{SCANS}/{{scan_id}}/changes", guarded(change_routes.of_scan, "read"), methods=["GET"]),
        Route(f"{SCANS}/{{scan_id}}/diff", guarded(change_routes.between, "read"), methods=["GET"]),
        Route(CHANGES, guarded(change_routes.list, "read"), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", guarded(metrics_text, "read"), methods=["GET"]),
        Route("/api/v1/openapi.json", openapi_json, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(AccessLog, metrics=metrics)],
        exception_handlers={
            Problem: _problem,
            ScanError: _scan_error,
            StoreError: _store_error,
            HTTPException: _http_error,
            Exception: _crash,
        },
    )


def by_method(**handlers: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """One endpoint for a route's methods (the route has already refused any other)."""
    async def handle(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return handle


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.response()


async def _scan_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ScanError)
    return Problem.from_scan_error(exc).response()


async def _store_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreError)
    note(request.scope, error=str(exc))  # the whole message, with the file, for the log only
    return Problem.from_store_error(exc).response()


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
