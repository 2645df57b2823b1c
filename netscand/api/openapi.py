"""The OpenAPI 3.1 document served at /api/v1/openapi.json, generated: the schemas from the
models (api/models.py, through msgspec's JSON Schema, the 2020-12 dialect OpenAPI 3.1 uses),
the operations from the route table below.

It is the project's API documentation (docs/api.md is its overview): where the original
contract leaves a choice open, the choice is written here (DESCRIPTION and the operations'
descriptions). Tests check every route of the app against it and every response the tests see
against its closed schemas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from netscand import __version__
from netscand.api import exports, models
from netscand.api.body import MAX_BODY
from netscand.api.changes import CHANGES
from netscand.api.cve import CVE_STATUS
from netscand.api.devices import DEVICES
from netscand.api.events import EVENTS, LAST_EVENT_ID, PING_S
from netscand.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from netscand.api.models import RESULT_PER_PAGE_DEFAULT
from netscand.api.problems import (
    BLANK, BODY_TOO_LARGE, CONFLICT, FORBIDDEN, INSUFFICIENT_SCOPE, INVALID_FIELD, MALFORMED_JSON,
    NOT_FOUND, NOT_READY, QUEUE_FULL, TOO_MANY_AUTH_FAILURES, UNAUTHENTICATED, UNAVAILABLE, UNPROCESSABLE,
    UNSUPPORTED_MEDIA_TYPE,
)
from netscand.api.protocol import HEAD_TIMEOUT_S, MAX_HEAD, MAX_URL
from netscand.api.scans import SCANS
from netscand.api.schedules import SCHEDULES
from netscand.api.sites import SITES
from netscand.api.throttle import BURST, REFILL_S
from netscand.api.webhooks import WEBHOOKS

Schema = dict[str, Any]
REF = "#/components/schemas/{name}"

DESCRIPTION = f"""\
Start, monitor, stop and read the results of network scans.

**Listeners and authentication.** The daemon serves this API on a Unix socket and on a TLS TCP
listener (TLS 1.2 or newer). Being able to open the Unix socket is the authorization (like
docker.sock): such requests need no token, have every scope and act as owner `unix:<uid>`, the
client's user id as the kernel reports it (SO_PEERCRED). Every TCP
request, except `GET /healthz`, `GET /readyz` and `GET /api/v1/openapi.json`, needs
`Authorization: Bearer <token>`; tokens are made by `netscand token create --name NAME --scope
read|scan|admin`, and act as owner NAME. `read` may use every GET (`/metrics` too: give
Prometheus a `read` token); `scan` may also start, stop, re-match and delete scans; `admin` may
do everything.

**Who sees which scans.** A scan belongs to the owner that started it. A `scan` token sees
(status, result, list), stops and deletes only its own scans: another owner's scan answers 404
as if it did not exist, and the list holds only its own. A `read` token sees every scan but can
change none: it is for dashboards and monitoring, which start nothing and so own nothing. `admin`
tokens and the Unix socket see, stop and delete every scan.

A missing, malformed, unknown
or revoked token gets 401 with `WWW-Authenticate: Bearer` (RFC 6750); a token whose scope is
too small gets 403 with `error="insufficient_scope"`. A client address whose requests fail to
authenticate more than {BURST} times a minute (a burst of {BURST}, then one more every
{REFILL_S:.0f} s) gets 429 with `Retry-After` instead of 401 until it may try again; a request
with a valid token is never refused this way.

**Errors.** Every error, including an unknown route (404) and a method a route does not take
(405, with `Allow`), is `application/problem+json` (RFC 9457) with `type`, `title`, `status`
and `detail`; validation errors (422) add `field`, the one input at fault (the first found):
a body field, a query parameter, the `Idempotency-Key` header, or `body` for a body that is
not a JSON object. Problem types:
`{BLANK}` (unknown route, wrong method, server error: the title is the reason phrase),
`{MALFORMED_JSON}` (400), `{UNAUTHENTICATED}` (401), `{INSUFFICIENT_SCOPE}` (403),
`{FORBIDDEN}` (403), `{NOT_FOUND}` (404, unknown scan, or another owner's),
`{CONFLICT}` (409), `{BODY_TOO_LARGE}` (413), `{UNSUPPORTED_MEDIA_TYPE}` (415),
`{INVALID_FIELD}` (422, with `field`; also a 403 for a target the policy refuses, with `field`
`target`), `{UNPROCESSABLE}` (422 without a field),
`{TOO_MANY_AUTH_FAILURES}` (429, with `Retry-After`), `{QUEUE_FULL}` (429, with `Retry-After`:
the owner has too many scans queued), `{UNAVAILABLE}` (503: the daemon's
database is locked, full or unreadable, with `Retry-After`; or, starting a scan, the routing
table is unreadable; or, for the CVE routes, the CVE database is unreadable, with `Retry-After`),
`{NOT_READY}` (503 from `/readyz`, with `checks`).

**Input rules.** A request's URL may take at most {MAX_URL} bytes (more gets 414), its request
line and headers together at most {MAX_HEAD} bytes (more gets 431), and its line and headers
must arrive within {HEAD_TIMEOUT_S:.0f} s of its first byte (else 408); these three are answered
before the request is routed (a problem document of type `{BLANK}`) and close the connection.
Request bodies are JSON of at most {MAX_BODY} bytes (1 MiB; more gets 413,
also when sent chunked). A body without `Content-Type` is read as JSON; any other type than
`application/json` (or `application/*+json`) gets 415. Unknown body fields and unknown or
repeated query parameters get 422 rather than being ignored, so a typo never goes unnoticed.
JSON `null` in an optional field means the field is not given. JSON `true`/`false` is never a
number, and integer fields do not take fractions (`5000.0`).

**Compatibility.** Responses may gain fields in later versions; clients should ignore fields they
do not know. The schemas here describe this version exactly (`additionalProperties: false`).
Times are ISO 8601 UTC with `Z`, to the second. Scan ids are UUIDs; `site_id` is echoed in
lower case whatever case it was sent in.
"""


def _schemas() -> dict[str, Schema]:
    _, schemas = msgspec.json.schema_components(models.SCHEMAS, ref_template=REF)
    schemas["StartRequest"].update(models.START_REQUEST_RULES)
    schemas["ScheduleCreate"].update(models.START_REQUEST_RULES)  # a start request, and the schedule's fields
    return models.in_order(schemas)


def _ref(model: type[msgspec.Struct]) -> Schema:
    return {"$ref": REF.format(name=model.__name__)}


def _json(model: type[msgspec.Struct], description: str, headers: Schema | None = None) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}},
            **({"headers": headers} if headers else {})}


def _problem(description: str, headers: Schema | None = None) -> Schema:
    return {"description": description,
            "content": {"application/problem+json": {"schema": _ref(models.Problem)}},
            **({"headers": headers} if headers else {})}


CHALLENGE = {"WWW-Authenticate": {"required": True, "schema": {"type": "string"},
                                  "description": "Bearer challenge (RFC 6750)."}}
RETRY_AFTER = {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"},
                               "description": "Seconds to wait before trying again."}}

RESPONSES: dict[str, Schema] = {
    "MalformedJson": _problem("The body is not valid JSON."),
    "Unauthenticated": _problem("TCP listener: no valid bearer token.", CHALLENGE),
    "Forbidden": _problem("The token's scope does not allow this, or (starting a scan) the target "
                          "is outside the configured target policy or, over HTTPS, in one of its "
                          "socket-only blocks.",
                          {"WWW-Authenticate": {"schema": {"type": "string"}, "description":
                                                "With a token of too small a scope: the scope needed."}}),
    "NotFound": _problem("No scan with this id, or (for a `scan` token) another owner's scan."),
    "TooLarge": _problem(f"The body is larger than {MAX_BODY} bytes."),
    "UnsupportedMediaType": _problem("The body is not declared as JSON."),
    "Invalid": _problem("A field, query parameter or header is invalid; `field` names it."),
    "Throttled": _problem("TCP listener: this client address failed to authenticate too often; "
                          "retry after `Retry-After` seconds with a valid token.", RETRY_AFTER),
    "StartThrottled": _problem(f"`{QUEUE_FULL}`: the owner already has `daemon.max_queued_per_owner` "
                               "scans queued (or being started); retry after `Retry-After` seconds. "
                               f"Or, TCP listener, `{TOO_MANY_AUTH_FAILURES}`: this client address "
                               "failed to authenticate too often.", RETRY_AFTER),
    "Unavailable": _problem("The daemon cannot serve this now: its database is locked, full or "
                            "unreadable (with `Retry-After`), or, starting a scan, it cannot read "
                            "the routing table. Retry later."),
    "ServerError": _problem("An unexpected error; the daemon's log has the details."),
}


def _use(name: str) -> Schema:
    assert name in RESPONSES, name
    return {"$ref": f"#/components/responses/{name}"}


AUTHED = {"401": _use("Unauthenticated"), "403": _use("Forbidden"), "429": _use("Throttled"),
          "500": _use("ServerError"), "503": _use("Unavailable")}
BODY_ERRORS = {"400": _use("MalformedJson"), "413": _use("TooLarge"), "415": _use("UnsupportedMediaType"),
               "422": _use("Invalid")}
SCAN_ID = {"name": "scan_id", "in": "path", "required": True, "schema": {"type": "string"},
           "description": "A scan id; anything that is not one gets 404."}
WEBHOOK_ID = {"name": "webhook_id", "in": "path", "required": True, "schema": {"type": "string"},
              "description": "A webhook id; anything that is not one gets 404."}
SCHEDULE_ID = {"name": "schedule_id", "in": "path", "required": True, "schema": {"type": "string"},
               "description": "A schedule id; anything that is not one gets 404."}
PATH_PARAMETERS = {"scan_id": SCAN_ID, "webhook_id": WEBHOOK_ID, "schedule_id": SCHEDULE_ID}
PATH_PARAMETERS |= {  # sites and devices
    "site_id": {"name": "site_id", "in": "path", "required": True, "schema": {"type": "string"},
                "description": "A site id (a UUID, any case); anything that is not one gets 404."},
    "device_id": {"name": "device_id", "in": "path", "required": True, "schema": {"type": "string"},
                  "description": "A device id, as the device list gives it."}}
_KEY_SCHEMA = msgspec.json.schema(models.IdempotencyKey)
IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
                   "description": _KEY_SCHEMA.pop("description"), "schema": _KEY_SCHEMA}
LOCATION = {"Location": {"required": True, "schema": {"type": "string"},
                         "description": "`/api/v1/scans/{id}`"}}
REPLAYED = {"Idempotent-Replayed": {"schema": {"type": "string", "const": "true"},
                                    "description": "Present on a replay."}}


def _query(model: type[msgspec.Struct]) -> list[Schema]:
    """The query parameters a query model declares, each with its schema."""
    _, schemas = msgspec.json.schema_components([model], ref_template=REF)
    properties = models.in_order(schemas[model.__name__]["properties"])
    return [{"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in properties.items()]


@dataclass(frozen=True)
class Operation:
    """One row of the route table: what the document says of a method on a path."""

    path: str
    method: str
    id: str
    summary: str
    responses: Schema
    description: str = ""
    body: type[msgspec.Struct] | None = None
    query: type[msgspec.Struct] | None = None
    headers: list[Schema] = field(default_factory=list)
    secured: bool = True

    def document(self) -> Schema:
        op: Schema = {"operationId": self.id, "summary": self.summary}
        if self.description:
            op["description"] = self.description
        parameters = [p for name, p in PATH_PARAMETERS.items() if f"{{{name}}}" in self.path] + self.headers
        parameters += _query(self.query) if self.query else []
        if parameters:
            op["parameters"] = parameters
        if self.body:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(self.body)}}}
        if not self.secured:
            op["security"] = []
        # The operation's own answers first; a common one only where it has none of that status.
        op["responses"] = dict(self.responses)
        common = {**(BODY_ERRORS if self.body else {}), **(AUTHED if self.secured else {})}
        for status, response in common.items():
            op["responses"].setdefault(status, response)
        if not self.secured:
            op["responses"].setdefault("500", _use("ServerError"))
        return op


START_DESCRIPTION = """\
Validates the request, checks the target policy and size, and queues the scan. Answers 202 with \
`Location` and the scan's status (`queued` or `running`). The scan belongs to the requester (the \
token's name, or `unix:<uid>`).

**Target policy.** A target must lie inside `policy.allowed_targets` (else 403 naming the first \
range outside). Blocks in `policy.socket_only_targets` (by default loopback 127.0.0.0/8 and \
link-local 169.254.0.0/16) may be scanned only over the Unix socket: over HTTPS, with any token, \
they get 403 naming the block. The policy is checked again when a queued scan starts: if a reload \
has narrowed it since, the scan ends `failed` with the reason, without sending a packet.

**Queue limit.** An owner may have `daemon.max_queued_per_owner` scans waiting to run (or being \
started) at once; one more gets 429 with `Retry-After`.

**Idempotency-Key.** With this header, a retried start returns the first scan instead of starting \
a second one: the same 202 and `Location`, plus `Idempotent-Replayed: true`; the body is that \
scan's status now. Keys belong to the requester and never expire (until the scan is deleted). A \
replay must send the same request: the same key with a different one (after validation: a \
site_id's case or a null field does not count) gets 422 with `field` `Idempotency-Key`, saying \
the key was reused with a different request."""

METRICS_DESCRIPTION = (
    f"The Prometheus text exposition format 0.0.4 (`{METRICS_CONTENT_TYPE}`), read "
    "when scraped: `netscand_scans{status}` (scans in the store), "
    "`netscand_probes_sent_total{worker}` and `netscand_replies_received_total{worker}` "
    "(the engine workers' own counters), `netscand_probes_per_second` and "
    "`netscand_replies_per_second` (all workers, since the previous scrape at least "
    "1 s before; `rate()` of the counters is the better graph), "
    "`netscand_worker_restarts_total{worker}`, `netscand_worker_up{worker}` (1 while "
    "its heartbeat is fresh), `netscand_api_requests_total{listener,code}` (both "
    "listeners; requests refused before routing, 408, 414 and 431, are not counted), "
    "and the control process's `process_*` and `python_*` metrics. Needs scope "
    "`read` on the TLS listener.")

NOT_FOUND_RESPONSE = {"404": _use("NotFound")}
CVE_UNAVAILABLE = _problem("The CVE database can't be read now (with `Retry-After`); or, like every "
                           "route, the daemon's database is locked, full or unreadable.")

REMATCH_DESCRIPTION = """\
Matches a finished scan's stored result against the CVE data loaded now (after `netscand cve \
sync` or `import`), stores it in place of the earlier match, and answers the result as GET \
`.../result` does (`page`, `per_page`). Only for a scan that matched CVEs (deep, or custom with \
`enable_cve_match`): another gets 409, as does a queued or running one (it is matched when it \
ends). Needs scope `scan` for the token's own scans, `admin` for any."""

WEBHOOK_CREATE_DESCRIPTION = """\
Creates a webhook: every event whose type one of `events` matches is POSTed to `url` from now on \
(not the events before), signed per the Standard Webhooks specification with `secret` (made when \
not given, and answered only here: keep it). Needs scope `admin`, as every webhook route does.

**Allowed destinations.** Every address the URL's host resolves to must be inside the config's \
`webhooks.allowed_destinations`; else 403 (`field` `url`) naming the address outside and how to \
allow it. With that list empty (the default) no webhook may be created (403 saying so). \
Loopback, link-local, unspecified, multicast and broadcast addresses, and this host's own, are \
refused even inside a listed block, unless one lies inside the narrowest of these ranges holding \
the address (`127.0.0.1/32` for a receiver on this host; `0.0.0.0/0` opens none). A host \
that does not resolve gets 422. The check is made again at every delivery attempt, which \
connects to the address checked then."""
WEBHOOK_NOT_FOUND = {"404": _problem("No webhook with this id.")}
WEBHOOK_REFUSED = {"403": _problem("The token's scope is not `admin`, or the URL's host resolves to an "
                                   "address outside `webhooks.allowed_destinations` (`field` `url`), or "
                                   "that list is empty.")}
WEBHOOK_ROUTES = (
    Operation(WEBHOOKS, "post", "createWebhook", "Create a webhook", description=WEBHOOK_CREATE_DESCRIPTION,
              body=models.WebhookCreate, responses={
                  "201": _json(models.WebhookCreated, "Created, with its secret.",
                               {"Location": {"required": True, "schema": {"type": "string"},
                                             "description": "`/api/v1/webhooks/{id}`"}}),
                  **WEBHOOK_REFUSED}),
    Operation(WEBHOOKS, "get", "listWebhooks", "List webhooks, newest first", query=models.WebhookQuery,
              responses={"200": _json(models.WebhookList, "One page of webhooks (without secrets)."),
                         "422": _use("Invalid")}),
    Operation(f"{WEBHOOKS}/{{webhook_id}}", "get", "getWebhook", "A webhook", responses={
        "200": _json(models.Webhook, "The webhook, without its secret."), **WEBHOOK_NOT_FOUND}),
    Operation(f"{WEBHOOKS}/{{webhook_id}}", "patch", "updateWebhook", "Change a webhook", description=(
        "Changes the fields given: `url` (checked as at creation), `events` (for events from then "
        "on) and `enabled`."), body=models.WebhookUpdate, responses={
        "200": _json(models.Webhook, "The webhook as changed."), **WEBHOOK_NOT_FOUND, **WEBHOOK_REFUSED}),
    Operation(f"{WEBHOOKS}/{{webhook_id}}", "delete", "deleteWebhook", "Delete a webhook", description=(
        "Deletes the webhook and its delivery log; its pending deliveries are not sent."), responses={
        "204": {"description": "Deleted."}, **WEBHOOK_NOT_FOUND}),
    Operation(f"{WEBHOOKS}/{{webhook_id}}/deliveries", "get", "listDeliveries", "A webhook's delivery log",
              description="One row per event sent to the webhook, newest event first: its attempts, "
                          "status and the last attempt's answer or error.", query=models.DeliveryQuery,
              responses={"200": _json(models.DeliveryList, "One page of deliveries."), **WEBHOOK_NOT_FOUND,
                         "422": _use("Invalid")}),
)

EVENTS_DESCRIPTION = f"""\
Server-Sent Events (`text/event-stream`): each event's `id` is its `seq`, its `event` its type, \
its `data` one line of JSON `{{"seq", "type", "scan_id", "site_id", "at", "data"}}` (the schemas \
`ScanStateEvent`, `ScanProgressEvent`, `HostUpEvent`, `PortFoundEvent`, `ChangeEvent`). Types: \
`scan.state` (a scan queued, running, completed, failed or cancelled), `scan.progress` (its \
percentage or counts moved; at most every half second), `host.up` and `port.found` (each host \
and open port once per scan, as the scan finds them), `change.<kind>` (what a completed scan \
changed in the device inventory, before its `scan.state` completed). Events are kept as long as \
their scan (and those of no scan `daemon.retention_days`).

**Resuming.** A client that reconnects with `{LAST_EVENT_ID}: <the last id it got>` (an \
EventSource does so itself) gets every event after it, none twice; `?after=<id>` says the same \
for a client that can't send headers, and `{LAST_EVENT_ID}` wins when both come. \
`{LAST_EVENT_ID}` or `after` that is not a non-negative integer gets 422 naming it. A comment \
line (`: ping`) comes every {PING_S:.0f} s. Every stream ends when the daemon stops, after the \
events written until then (its running scans' `cancelled`); reconnect to go on."""
# The schema of ONE event of the stream (what OpenAPI 3.2 names itemSchema), its data JSON of these
# schemas: SSE-aware tools such as schemathesis read a text/event-stream schema so, and checked each
# event of the stream against the plain `string` this said before.
EVENT_STREAM = {"text/event-stream": {
    "schema": {"type": "object", "required": ["id", "event", "data"], "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"}, "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"oneOf": [_ref(m) for m in models.EVENT_MODELS]}}},
        "description": "One event of the Server-Sent Events stream."}}}
LAST_EVENT_ID_HEADER = {"name": LAST_EVENT_ID, "in": "header", "required": False,
                        "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
                        "description": "The id of the last event the client has: the stream starts after it."}
EVENT_ROUTES = (
    Operation(f"{SCANS}/{{scan_id}}/events", "get", "scanEvents", "A scan's live events", description=(
        "The scan's events from its first (or after the client's last), live, until its last "
        "`scan.state` (completed, failed or cancelled) has been sent: then the stream ends. A scan "
        "that ended before it kept events ends the stream once its events are sent. Visible as "
        "GET `/api/v1/scans/{scan_id}` is: another owner's scan is 404 for a `scan` token.\n\n"
        + EVENTS_DESCRIPTION), headers=[LAST_EVENT_ID_HEADER], query=models.EventsQuery, responses={
        "200": {"description": "The scan's events.", "content": EVENT_STREAM},
        "204": {"description": "The scan has ended and the client has all its events: an EventSource "
                               "stops reconnecting."}, **NOT_FOUND_RESPONSE,
        "422": _use("Invalid")}),
    Operation(EVENTS, "get", "events", "Every live event", description=(
        "Every event from now on (or after the client's last), live, for as long as the client "
        "stays: of every scan, or for a `scan` token of its own scans only.\n\n" + EVENTS_DESCRIPTION),
        headers=[LAST_EVENT_ID_HEADER], query=models.EventsQuery, responses={
        "200": {"description": "The events.", "content": EVENT_STREAM}, "422": _use("Invalid")}),
)

SCHEDULE_CREATE_DESCRIPTION = """\
Creates a schedule: the start request of its scans (every field of `POST /api/v1/scans/start`) \
and when to start them, a five-field cron expression in UTC. The request is checked as a start \
is, the target policy included (403, 422), but nothing starts: its first scan starts at `next_due`. \
Its scans belong to the schedule's owner, the requester (the token's name, or `unix:<uid>`); made \
over HTTPS, they start as an HTTPS request does (not the policy's socket-only targets).

**Due times.** Each due time starts one scan, with the Idempotency-Key \
`schedule:<id>:<due time>` (a daemon that stopped between starting it and recording it starts it \
once). A due time found more than 60 s late was missed while the daemon was down: `missed` \
run_once starts one scan for all those missed, skip starts none; one run records them, however \
many. A start refused (the target policy as it is then, a full queue, a deleted site) is a run \
`refused` with the reason; the schedule stays, and its next due time comes. Each run is in \
`GET /api/v1/schedules/{schedule_id}`'s `runs`.

**deliver.** `changes`: webhooks get its scans' change events and their end (`scan.state`) only."""
SCHEDULE_NOT_FOUND = {"404": _problem("No schedule with this id, or (for a `scan` token) another owner's.")}
SCHEDULE_REFUSED = {"403": _problem("The token's scope does not allow this, or the target is outside the "
                                    "target policy (`field` `target`), as for a start.")}
SCHEDULE_ROUTES = (
    Operation(SCHEDULES, "post", "createSchedule", "Create a schedule", description=SCHEDULE_CREATE_DESCRIPTION,
              body=models.ScheduleCreate, responses={
                  "201": _json(models.Schedule, "Created; `runs` is empty.", {
                      "Location": {"required": True, "schema": {"type": "string"},
                                   "description": "`/api/v1/schedules/{id}`"}}),
                  **SCHEDULE_REFUSED}),
    Operation(SCHEDULES, "get", "listSchedules", "List schedules, newest first", query=models.ScheduleQuery,
              description="Every schedule, or for a `scan` token only its own; without their runs.",
              responses={"200": _json(models.ScheduleList, "One page of schedules; a page past the last is "
                                                            "empty."), "422": _use("Invalid")}),
    Operation(f"{SCHEDULES}/{{schedule_id}}", "get", "getSchedule", "A schedule and its latest runs", responses={
        "200": _json(models.Schedule, "The schedule, its next and last due times and its latest runs."),
        **SCHEDULE_NOT_FOUND}),
    Operation(f"{SCHEDULES}/{{schedule_id}}", "patch", "updateSchedule", "Change a schedule", description=(
        "A JSON merge patch (RFC 7396): the fields given replace the schedule's, null removes an "
        "optional one; the whole is then checked as POST checks a new one, the target policy only if "
        "the start request changed (so a schedule the policy now refuses can still be disabled). "
        "Disabling clears `next_due`; enabling, or a new `cron`, sets it to the cron's next time: due "
        "times while it was disabled are not missed. Needs scope `scan` for the token's own "
        "schedules, `admin` for any."), body=models.SchedulePatch, responses={
        "200": _json(models.Schedule, "The schedule as changed."), **SCHEDULE_NOT_FOUND, **SCHEDULE_REFUSED}),
    Operation(f"{SCHEDULES}/{{schedule_id}}", "delete", "deleteSchedule", "Delete a schedule", description=(
        "Deletes the schedule and its runs; the scans it started stay. Needs scope `scan` for the "
        "token's own schedules, `admin` for any."), responses={
        "204": {"description": "Deleted."}, **SCHEDULE_NOT_FOUND}),
)

SITE_NOT_FOUND = {"404": _problem("No site with this id.")}
NAME_TAKEN = {"409": _problem("Another site has this name.")}
SITE_ROUTES = (
    Operation(SITES, "post", "createSite", "Create a site", description=(
        "A site is where a scan's devices belong: start a scan with its `site_id` (a `site_id` that "
        "names no site gets 422), and the devices it finds join the site's inventory. The same "
        "address at two sites is two devices. Needs scope `admin`."), body=models.SiteRequest, responses={
        "201": _json(models.Site, "Created.", {"Location": {"required": True, "schema": {"type": "string"},
                                                            "description": "`/api/v1/sites/{id}`"}}),
        **NAME_TAKEN}),
    Operation(SITES, "get", "listSites", "List sites by name", query=models.SiteQuery, responses={
        "200": _json(models.SiteList, "One page of sites; a page past the last is empty."), "422": _use("Invalid")}),
    Operation(f"{SITES}/{{site_id}}", "get", "getSite", "A site", responses={
        "200": _json(models.Site, "The site."), **SITE_NOT_FOUND}),
    Operation(f"{SITES}/{{site_id}}", "patch", "renameSite", "Rename a site", description="Needs scope `admin`.",
              body=models.SiteRequest, responses={
                  "200": _json(models.Site, "The site, renamed."), **SITE_NOT_FOUND, **NAME_TAKEN}),
    Operation(f"{SITES}/{{site_id}}", "delete", "deleteSite", "Delete a site and its inventory", description=(
        "Deletes the site with its inventory: its devices, their addresses, ports, CVEs and changes. "
        "Finished scans of the site keep their results and their `site_id`. Refused (409) while a scan "
        "of the site is queued or running. Needs scope `admin`."), responses={
        "204": {"description": "Deleted."}, **SITE_NOT_FOUND,
        "409": _problem("A scan of the site is queued or running: stop it or let it end first.")}),
)
DEVICE_ROUTES = (
    Operation(DEVICES, "get", "listDevices", "List the inventory's devices", description=(
        "The devices of the inventory: one per device per site, merged from every completed scan "
        "(a failed or cancelled scan changes nothing). Sorted by site, then address; every filter "
        "given must hold; `total` counts the matches on all pages. Each filter is answered by an "
        "index, never by reading every device." + exports.DEVICES_DESCRIPTION),
        query=models.DeviceQuery, responses={
        "200": exports.documented(_json(models.DeviceList, "One page of devices; a page past the last is empty."),
                                  exports.DEVICE_FORMATS),
        "422": _use("Invalid")}),
    Operation(f"{DEVICES}/{{device_id}}", "get", "getDevice", "A device and its history", description=(
        "The device with its open ports, CVEs, every address it has had, and its newest changes "
        "(`more_changes` says whether there are older ones)."), responses={
        "200": _json(models.DeviceRecord, "The device."), "404": _problem("No device with this id.")}),
)

CHANGES_DESCRIPTION = (
    "A completed scan is compared, device by device, with the inventory's previous state of what it "
    "covered (its targets, the ports it probed, service detection and CVE matching if it did them); "
    "a failed or cancelled scan changes nothing. Kinds: device_appeared, device_gone, address_changed, "
    "port_opened, port_closed, service_changed, product_changed, version_changed, os_changed, "
    "cve_found, cve_fixed. docs/api.md (\"Changes\") gives the rules. Oldest first.")
CHANGE_ROUTES = (
    Operation(f"{SCANS}/{{scan_id}}/changes", "get", "scanChanges", "What a scan changed", description=(
        "The changes the scan made to its site's inventory when it completed (none for a scan that "
        "did not complete). Visible as GET `/api/v1/scans/{scan_id}` is: another owner's scan is "
        "404 for a `scan` token.\n\n" + CHANGES_DESCRIPTION), query=models.ScanChangesQuery, responses={
        "200": _json(models.ChangeList, "One page of the scan's changes."), **NOT_FOUND_RESPONSE,
        "422": _use("Invalid")}),
    Operation(f"{SCANS}/{{scan_id}}/diff", "get", "diffScans", "What changed between two scans", description=(
        "The changes from scan `against` to this one, compared directly (not through the inventory) "
        "by the inventory's rules, over what both covered: the addresses both targeted (a hostname "
        "in a target covers the addresses that scan found), the ports both probed, services if both "
        "detected them, CVEs if both matched them. By address, then kind. Both scans must have "
        "completed (409). Either scan hidden from the caller, as GET `/api/v1/scans/{scan_id}` "
        "hides it, is 404."), query=models.DiffQuery, responses={
        "200": _json(models.Diff, "One page of the changes."), **NOT_FOUND_RESPONSE,
        "409": _problem("A scan compared has not completed."), "422": _use("Invalid")}),
    Operation(CHANGES, "get", "listChanges", "Changes to the inventory", description=(
        "Every change of every completed scan, or of one site's scans, since a time.\n\n"
        + CHANGES_DESCRIPTION), query=models.ChangesQuery, responses={
        "200": _json(models.ChangeList, "One page of changes; a page past the last is empty."),
        "422": _use("Invalid")}),
)

ROUTES = (
    Operation(f"{SCANS}/start", "post", "startScan", "Start a scan", description=START_DESCRIPTION,
              body=models.StartRequest, headers=[IDEMPOTENCY_KEY], responses={
                  "202": _json(models.ScanStatus, "Queued (or replayed).", {**LOCATION, **REPLAYED}),
                  "429": _use("StartThrottled")}),
    Operation(f"{SCANS}/{{scan_id}}", "get", "getScan", "A scan's status", responses={
        "200": _json(models.ScanStatus, "The scan's status."), **NOT_FOUND_RESPONSE}),
    Operation(f"{SCANS}/{{scan_id}}", "delete", "deleteScan", "Delete a scan", description=(
        "Deletes a finished scan (completed, failed or cancelled) and its results; its "
        "Idempotency-Key may then be used again. A queued or running scan must be stopped first "
        "(409). Needs scope `scan` for the token's own scans, `admin` for any. Finished scans are "
        "also deleted `daemon.retention_days` after they ended."), responses={
        "204": {"description": "Deleted."}, **NOT_FOUND_RESPONSE,
        "409": _problem("The scan is queued or running: stop it first.")}),
    Operation(f"{SCANS}/{{scan_id}}/result", "get", "getScanResult", "A scan's results", description=(
        "Available while the scan runs too (partial, `status: running`). Devices are sorted by IP, "
        "their ports by number, and come a page at a time: `per_page` devices (default "
        f"{RESULT_PER_PAGE_DEFAULT}, which holds an ordinary scan's whole result) of page `page`. "
        "`devices_found` and `open_ports_total` count the whole result; the last page is the one "
        "where `page * per_page >= devices_found`, and a page past it is empty." + exports.DESCRIPTION),
        query=models.ResultQuery, responses={
        "200": exports.documented(_json(models.ScanResult, "What the scan found so far: one page.")),
        **NOT_FOUND_RESPONSE,
        "422": _use("Invalid")}),
    Operation(f"{SCANS}/{{scan_id}}/stop", "post", "stopScan", "Stop a scan", description=(
        "Stops a queued or running scan: it ends `cancelled` and keeps what it found. A request "
        "body, if any, is ignored. Needs scope `scan` for the token's own scans, `admin` for any."),
        responses={"200": _json(models.ScanStatus, "The scan's status, now `cancelled`."),
                   **NOT_FOUND_RESPONSE,
                   "409": _problem("The scan has already finished (completed, failed or cancelled).")}),
    Operation(f"{SCANS}/{{scan_id}}/rematch", "post", "rematchScan", "Match a scan's CVEs again",
              description=REMATCH_DESCRIPTION + exports.DESCRIPTION, query=models.ResultQuery, responses={
                  "200": exports.documented(_json(models.ScanResult, "The re-matched result: one page.")),
                  **NOT_FOUND_RESPONSE,
                  "409": _problem("The scan is queued or running, or did not match CVEs."),
                  "422": _use("Invalid"), "503": CVE_UNAVAILABLE}),
    Operation(CVE_STATUS, "get", "cveStatus", "The CVE data", description=(
        "The CVE data scans are matched against: each source's record count, newest record and last "
        "import, and the data's age. `loaded` is false until NVD data is imported (`netscand cve "
        "sync` or `netscand cve import`); scans then complete without CVE findings, saying so."),
        responses={"200": _json(models.CveStatus, "The CVE data's status."), "503": CVE_UNAVAILABLE}),
    Operation(SCANS, "get", "listScans", "List scans, newest first",
              description="Every scan, or for a `scan` token only its own.", query=models.ListQuery,
              responses={"200": _json(models.ScanList, "One page of scans; a page past the last is empty."),
                         "422": _use("Invalid")}),
    *WEBHOOK_ROUTES,
    *SCHEDULE_ROUTES,
    *EVENT_ROUTES,
    *CHANGE_ROUTES,
    *SITE_ROUTES,
    *DEVICE_ROUTES,
    Operation("/healthz", "get", "health", "Liveness of the API", secured=False,
              responses={"200": _json(models.Health, "The API answers.")}),
    Operation("/readyz", "get", "ready", "Readiness of the daemon", secured=False, description=(
        "Whether the daemon can take and run scans now: its database answers and has room to "
        "write, and every engine worker's heartbeat is fresh. For a load balancer or an "
        "orchestrator; `/healthz` only says that the API answers. Nothing is written."), responses={
        "200": _json(models.Readiness, "Ready."),
        "503": {"description": f"Not ready (`{NOT_READY}`); `detail` and `checks` say what is not.",
                "content": {"application/problem+json": {"schema": _ref(models.NotReady)}}}}),
    Operation("/metrics", "get", "metrics", "Prometheus metrics", description=METRICS_DESCRIPTION,
              responses={"200": {"description": "The metrics.",
                                 "content": {"text/plain": {"schema": {"type": "string"}}}}}),
    Operation("/api/v1/openapi.json", "get", "openapi", "This document", secured=False, responses={
        "200": {"description": "The OpenAPI 3.1 document.",
                "content": {"application/json": {"schema": {"type": "object"}}}}}),
)


def _paths() -> Schema:
    paths: Schema = {}
    for op in ROUTES:
        paths.setdefault(op.path, {})[op.method] = op.document()
    return paths


def document() -> Schema:
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {"title": "netscand scanning API", "version": __version__,
                 "description": DESCRIPTION,
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "A token from `netscand token create`; not needed on the Unix socket."}},
            "schemas": _schemas(),
            "responses": RESPONSES,
        },
    }
