"""The webhook endpoints (scope admin for every method): create, list, read, change and delete
webhooks, and read each one's delivery log. The sender is scan/webhooks.py."""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response

from netscand.api.auth import Principal
from netscand.api.body import read_json
from netscand.api.models import DeliveryQuery, WebhookCreate, WebhookQuery, WebhookUpdate
from netscand.api.problems import INVALID_FIELD, NOT_FOUND, Problem
from netscand.api.responses import JSONBody
from netscand.api.validate import body_as, query_as
from netscand.scan import destinations
from netscand.scan.orchestrator import Orchestrator
from netscand.store import Store
from netscand.store import webhooks as stored
from netscand.store.clock import utc_now

T = TypeVar("T")
WEBHOOKS = "/api/v1/webhooks"
SECRET_BYTES = 32
SECRET_SIZES = (24, 64)  # bytes, as the Standard Webhooks specification asks
SHOWN = ("id", "url", "events", "enabled", "created_at", "updated_at")


def location(hook_id: str) -> str:
    return f"{WEBHOOKS}/{hook_id}"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


class WebhookEndpoints:
    def __init__(self, orchestrator: Orchestrator, store: Store) -> None:
        self.orchestrator, self.store = orchestrator, store

    async def create(self, request: Request, who: Principal) -> Response:
        req = body_as(await read_json(request), WebhookCreate)
        secret = req.secret or new_secret()
        _check_secret(secret)
        await self._check_url(req.url)
        hook = {"id": str(uuid.uuid4()), "url": req.url, "events": req.events, "secret": secret, "owner": who.owner}
        made = await self._write("cannot create the webhook", stored.create, hook)
        return JSONBody(_shown(made) | {"secret": secret}, status_code=201, headers={"Location": location(made["id"])})

    async def list(self, request: Request, who: Principal) -> Response:
        q = query_as(request.query_params, WebhookQuery)
        hooks, total = await self._read("cannot list webhooks", stored.page, q.page, q.per_page)
        return JSONBody({"webhooks": [_shown(h) for h in hooks], "page": q.page, "per_page": q.per_page,
                         "total": total})

    async def get(self, request: Request, who: Principal) -> Response:
        return JSONBody(_shown(await self._existing(request.path_params["webhook_id"])))

    async def update(self, request: Request, who: Principal) -> Response:
        hook_id = request.path_params["webhook_id"]
        req = body_as(await read_json(request), WebhookUpdate)
        if req.url is not None:
            await self._check_url(req.url)
        fields = {k: v for k, v in (("url", req.url), ("events", req.events), ("enabled", req.enabled))
                  if v is not None}
        changed = await self._write(f"cannot change webhook {hook_id}", stored.update, hook_id, fields)
        if changed is None:
            raise _not_found(hook_id)
        return JSONBody(_shown(changed))

    async def delete(self, request: Request, who: Principal) -> Response:
        hook_id = request.path_params["webhook_id"]
        if not await self._write(f"cannot delete webhook {hook_id}", stored.delete, hook_id):
            raise _not_found(hook_id)
        return Response(status_code=204)

    async def deliveries(self, request: Request, who: Principal) -> Response:
        hook_id = request.path_params["webhook_id"]
        q = query_as(request.query_params, DeliveryQuery)
        await self._existing(hook_id)
        rows, total = await self._read(f"cannot read the deliveries of webhook {hook_id}", stored.deliveries,
                                       hook_id, q.page, q.per_page, None if q.status is UNSET else q.status)
        return JSONBody({"deliveries": [_delivery(r) for r in rows], "page": q.page, "per_page": q.per_page,
                         "total": total})

    async def _check_url(self, url: str) -> None:
        """403 unless every address the URL's host has now is in the allowlist; 422 for a URL
        that is none of ours, or a host that does not resolve in time."""
        cfg = self.orchestrator.limits.now.webhooks
        try:
            async with asyncio.timeout(cfg.timeout):
                await destinations.resolve(url, cfg.allowed_destinations)
        except destinations.DestinationError as exc:
            title = "Destination not allowed" if exc.status == 403 else "Invalid field"
            raise Problem(exc.status, INVALID_FIELD, title, exc.detail, field="url") from None
        except TimeoutError:
            raise Problem.invalid("url", f"url's host did not resolve within {cfg.timeout:g} s") from None

    async def _existing(self, hook_id: str) -> dict[str, Any]:
        hook = await self._read(f"cannot read webhook {hook_id}", stored.get, hook_id)
        if hook is None:
            raise _not_found(hook_id)
        return hook

    async def _read(self, doing: str, query: Callable[..., T], *args: Any) -> T:
        return await self.orchestrator.io.read(self.store.call, doing, query, *args)

    async def _write(self, doing: str, change: Callable[..., T], *args: Any) -> T:
        return await self.orchestrator.io.write(self.store.call, doing, change, *args)


def _check_secret(secret: str) -> None:
    try:
        size = len(base64.b64decode(secret.removeprefix("whsec_"), validate=True))
    except (binascii.Error, ValueError):
        size = 0
    if not SECRET_SIZES[0] <= size <= SECRET_SIZES[1]:
        raise Problem.invalid("secret", f"secret must be whsec_ and the base64 of {SECRET_SIZES[0]} to "
                              f"{SECRET_SIZES[1]} bytes; leave it out to have one made")


def _not_found(hook_id: str) -> Problem:
    return Problem(404, NOT_FOUND, "Webhook not found", f"no webhook with id {hook_id[:80]}")


def _shown(hook: dict[str, Any]) -> dict[str, Any]:
    """A webhook as the API shows it: never its secret, which only its creation answers."""
    return {k: hook[k] for k in SHOWN}


def _delivery(row: dict[str, Any]) -> dict[str, Any]:
    # Unix time in the store (retries may be under a second apart); a new delivery's is 0: now.
    due = row["next_attempt"] if row["status"] == "pending" else None
    wait = None if due is None else timedelta(seconds=max(0.0, due - time.time()))
    return {"id": row["id"], "event_seq": row["seq"], "type": row["type"], "status": row["status"],
            "attempts": row["attempts"], "next_attempt_at": None if wait is None else utc_now(wait),
            "last_status_code": row["last_status"], "last_error": row["last_error"],
            "created_at": row["created_at"], "last_attempt_at": row["last_attempt_at"],
            "delivered_at": row["delivered_at"]}
