"""The schedule endpoints: create, list, read, change and delete schedules. A schedule belongs
to its creator as a scan does: a `scan` token reaches only its own, `read` reads every one,
`admin` and the Unix socket change any. The scheduler that starts their scans is scan/schedules.py."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from netscand.api.auth import Principal
from netscand.api.body import read_json
from netscand.api.models import ScheduleCreate, SchedulePatch, ScheduleQuery, StartRequest
from netscand.api.problems import NOT_FOUND, Problem
from netscand.api.responses import JSONBody
from netscand.api.validate import body_as, query_as, start_request
from netscand.scan.orchestrator import Orchestrator
from netscand.scan.profiles import ScanRequest
from netscand.scan.schedules import cron_error
from netscand.store import Store
from netscand.store import schedules as stored
from netscand.store.clock import utc_now

T = TypeVar("T")
SCHEDULES = "/api/v1/schedules"
SETTINGS = ("name", "cron", "missed", "deliver", "enabled")  # the schedule's own fields
SHOWN = ("id", *SETTINGS, "created_at", "updated_at", "next_due", "last_due")
RECENT_RUNS = 20


def location(schedule_id: str) -> str:
    return f"{SCHEDULES}/{schedule_id}"


class ScheduleEndpoints:
    def __init__(self, orchestrator: Orchestrator, store: Store) -> None:
        self.orchestrator, self.store = orchestrator, store

    async def create(self, request: Request, who: Principal) -> Response:
        req, settings = read_body(await read_json(request))
        await self.orchestrator.admission.vet(req, who.owner, who.remote)
        now = utc_now()
        schedule = {"id": str(uuid.uuid4()), **settings, "request": dataclasses.asdict(req), "owner": who.owner,
                    "remote": who.remote, "created_at": now, "updated_at": now,
                    "next_due": self._next_due(settings), "last_due": None}
        made = await self._write("cannot create the schedule", stored.create, schedule)
        return JSONBody(_shown(made, []), status_code=201, headers={"Location": location(made["id"])})

    async def list(self, request: Request, who: Principal) -> Response:
        q = query_as(request.query_params, ScheduleQuery)
        rows, total = await self._read("cannot list schedules", stored.page, q.page, q.per_page, who.viewer)
        return JSONBody({"schedules": [_shown(r) for r in rows], "page": q.page, "per_page": q.per_page,
                         "total": total})

    async def get(self, request: Request, who: Principal) -> Response:
        schedule = await self._existing(request.path_params["schedule_id"], who)
        return JSONBody(_shown(schedule, await self._runs(schedule["id"])))

    async def update(self, request: Request, who: Principal) -> Response:
        """A merge patch of the schedule's fields, the whole then checked as a new schedule is (the
        policy only if what it scans changed: a schedule the policy now refuses can be disabled)."""
        schedule = await self._existing(request.path_params["schedule_id"], who)
        patch = await read_json(request)
        body_as(patch, SchedulePatch)  # its own shape first: an object of known fields and types
        merged = {k: v for k, v in (_body(schedule) | patch).items() if v is not None}
        req, settings = read_body(merged)
        fields = {**settings, "request": dataclasses.asdict(req), "updated_at": utc_now()}
        if fields["request"] != schedule["request"]:
            await self.orchestrator.admission.vet(req, who.owner, who.remote)
            fields["remote"] = who.remote  # its scans start as the request that set their target would
        if not settings["enabled"] or not schedule["enabled"] or settings["cron"] != schedule["cron"]:
            fields["next_due"] = self._next_due(settings)
        changed = await self._write(f"cannot change schedule {schedule['id']}", stored.update, schedule["id"], fields)
        if changed is None:
            raise _not_found(schedule["id"])  # deleted meanwhile
        return JSONBody(_shown(changed, await self._runs(schedule["id"])))

    async def delete(self, request: Request, who: Principal) -> Response:
        schedule = await self._existing(request.path_params["schedule_id"], who)
        if not await self._write(f"cannot delete schedule {schedule['id']}", stored.delete, schedule["id"]):
            raise _not_found(schedule["id"])
        return Response(status_code=204)

    def _next_due(self, settings: dict[str, Any]) -> str | None:
        return self.orchestrator.schedules.next_due(settings["cron"]) if settings["enabled"] else None

    async def _existing(self, schedule_id: str, who: Principal) -> dict[str, Any]:
        schedule = await self._read(f"cannot read schedule {schedule_id}", stored.get, schedule_id)
        if schedule is None or (who.viewer is not None and schedule["owner"] != who.viewer):
            raise _not_found(schedule_id)
        return schedule

    async def _runs(self, schedule_id: str) -> list[dict[str, Any]]:
        return await self._read(f"cannot read the runs of schedule {schedule_id}", stored.runs, schedule_id,
                                RECENT_RUNS)

    async def _read(self, doing: str, query: Callable[..., T], *args: Any) -> T:
        return await self.orchestrator.io.read(self.store.call, doing, query, *args)

    async def _write(self, doing: str, change: Callable[..., T], *args: Any) -> T:
        return await self.orchestrator.io.write(self.store.call, doing, change, *args)


def read_body(data: Any) -> tuple[ScanRequest, dict[str, Any]]:
    """A schedule's body as its start request (checked as a start is, first) and its own fields;
    or a 422 naming the field at fault."""
    if isinstance(data, Mapping) and set(data) - set(ScheduleCreate.__struct_fields__):
        body_as(data, ScheduleCreate)  # names the first unknown field, as every body does
    req = start_request(_start_part(data))
    body = body_as(data, ScheduleCreate)
    if why := cron_error(body.cron):
        raise Problem.invalid("cron", why)
    return req, {name: getattr(body, name) for name in SETTINGS}


def _start_part(data: Any) -> Any:
    """The start request's fields of a body (the body itself if it is no object, to be refused)."""
    if not isinstance(data, Mapping):
        return data
    return {k: v for k, v in data.items() if k in StartRequest.__struct_fields__}


def _body(schedule: dict[str, Any]) -> dict[str, Any]:
    """A stored schedule as the body that would create it."""
    return schedule["request"] | {name: schedule[name] for name in SETTINGS}


def _shown(schedule: dict[str, Any], runs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    shown = schedule["request"] | {name: schedule[name] for name in SHOWN}
    return shown if runs is None else shown | {"runs": runs}


def _not_found(schedule_id: str) -> Problem:
    # Also what another owner's schedule looks like to a `scan` token: not even its existence shows.
    return Problem(404, NOT_FOUND, "Schedule not found", f"no schedule with id {schedule_id}")
