"""The OpenAPI 3.1 document served at /api/v1/openapi.json, written out by hand.

It is the project's API documentation: where scanning-api.txt and API.md leave a choice open,
the choice is written here (DESCRIPTION and the operations' descriptions). Schemas are JSON
Schema 2020-12, as OpenAPI 3.1 uses; tests check every route against it and every response
the tests see against its schema.
"""

from __future__ import annotations

from typing import Any

from netscand import __version__
from netscand.api.body import MAX_BODY
from netscand.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from netscand.api.problems import (
    BLANK, BODY_TOO_LARGE, CONFLICT, FORBIDDEN, INSUFFICIENT_SCOPE, INVALID_FIELD, MALFORMED_JSON,
    NOT_FOUND, NOT_READY, QUEUE_FULL, TOO_MANY_AUTH_FAILURES, UNAUTHENTICATED, UNAVAILABLE, UNPROCESSABLE,
    UNSUPPORTED_MEDIA_TYPE,
)
from netscand.api.protocol import HEAD_TIMEOUT_S, MAX_HEAD, MAX_URL
from netscand.api.throttle import BURST, REFILL_S
from netscand.api.validate import (
    IDEMPOTENCY_KEY_MAX, MAX_CONCURRENT, MAX_PAGE, MIN_RATE, PER_PAGE, PER_PAGE_DEFAULT, RESULT_PER_PAGE,
    RESULT_PER_PAGE_DEFAULT, RETRIES, STATUSES, TIMEOUT_MS,
)
from netscand.scan.profiles import PROFILES

Schema = dict[str, Any]

DESCRIPTION = f"""\
Start, monitor, stop and read the results of network scans.

**Listeners and authentication.** The daemon serves this API on a Unix socket and on a TLS TCP
listener (TLS 1.2 or newer). Being able to open the Unix socket is the authorization (like
docker.sock): such requests need no token, have every scope and act as owner `unix:<uid>`, the
client's user id as the kernel reports it (SO_PEERCRED). Every TCP
request, except `GET /healthz`, `GET /readyz` and `GET /api/v1/openapi.json`, needs
`Authorization: Bearer <token>`; tokens are made by `netscand token create --name NAME --scope
read|scan|admin`, and act as owner NAME. `read` may use every GET (`/metrics` too: give
Prometheus a `read` token); `scan` may also start, stop and delete scans; `admin` may do
everything.

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
table is unreadable), `{NOT_READY}` (503 from `/readyz`, with `checks`).

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

**Compatibility.** Responses may gain fields; clients should ignore fields they do not know.
Times are ISO 8601 UTC with `Z`, to the second. Scan ids are UUIDs; `site_id` is echoed in
lower case whatever case it was sent in.
"""


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


UUID: Schema = {"type": "string", "format": "uuid",
                "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"}
TIME: Schema = {"type": "string", "format": "date-time",
                "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"}
COUNT: Schema = {"type": "integer", "minimum": 0}
TARGET: Schema = {
    "description": "An IPv4 address, a CIDR block, a range `a.b.c.d-e.f.g.h` or a hostname "
                   "(resolved once, at start), or a list of these. IPv6 gets 422 until supported.",
    "oneOf": [
        {"type": "string", "minLength": 1, "pattern": "\\S"},
        {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1, "pattern": "\\S"}},
    ],
}


def _int(bounds: tuple[int, int], description: str) -> Schema:
    return _nullable({"type": "integer", "minimum": bounds[0], "maximum": bounds[1],
                      "description": description})


START_REQUEST: Schema = {
    "type": "object",
    "additionalProperties": False,
    "required": ["target"],
    "properties": {
        "target": TARGET,
        "profile": _nullable({
            "type": "string", "enum": list(PROFILES), "default": "normal",
            "description": "quick: top 100 TCP ports, no profiling, 30 s per host. normal: top "
                           "1000, device profiling, 120 s. deep: 1-65535, full profiling and CVE "
                           "match, 600 s. stealth: top 1000, SYN only, random order, no ping "
                           "sweep, 100 probes/s, 300 s. custom: `ports` and the options below."}),
        "site_id": _nullable({**UUID, "description": "The site the scan belongs to; a filter of "
                              "the list."}),
        "ports": _nullable({
            "type": "array", "minItems": 1,
            "description": "Only with (and required by) profile custom: port numbers and "
                           "inclusive ranges \"a-b\".",
            "items": {"oneOf": [
                {"type": "integer", "minimum": 1, "maximum": 65535},
                {"type": "string", "pattern": "^\\s*([0-9]+\\s*(-\\s*[0-9]+\\s*)?|-)$"},
            ]}}),
        "timeout_ms": _int(TIMEOUT_MS, "How long to wait for a reply to one probe before "
                           "retrying or calling the port filtered."),
        "max_concurrent": _int(MAX_CONCURRENT, "How many hosts are scanned at once."),
        "enable_profiling": _nullable({"type": "boolean", "description": "Only with profile "
                                       "custom: device profiling of the hosts found."}),
        "enable_cve_match": _nullable({"type": "boolean", "description": "Only with profile "
                                       "custom: match services against the CVE database."}),
        "rate": _nullable({"type": "number", "minimum": MIN_RATE,
                           "description": "Probes per second; above the policy's max_rate: 422."}),
        "retries": _int(RETRIES, "Retries of an unanswered probe."),
        "skip_discovery": _nullable({"type": "boolean", "description": "Probe every target address "
                                     "instead of only those that answer host discovery (ICMP echo, "
                                     "TCP SYN and ACK pings; ARP on the local link), like nmap's -Pn."}),
    },
    # ports, enable_profiling and enable_cve_match are what the fixed profiles set themselves.
    "if": {"required": ["profile"], "properties": {"profile": {"const": "custom"}}},
    "then": {"required": ["ports"], "properties": {"ports": {"type": "array"}}},
    "else": {"properties": {"ports": {"type": "null"}, "enable_profiling": {"type": "null"},
                            "enable_cve_match": {"type": "null"}}},
}

STATUS_VALUE: Schema = {
    "type": "string", "enum": list(STATUSES),
    "description": "queued: waiting to start; running: actively scanning; completed: finished "
                   "successfully; failed: an error occurred (see `error`); cancelled: stopped "
                   "by a user or by the daemon shutting down.",
}

SCAN_STATUS: Schema = {
    "type": "object",
    "required": ["id", "status", "target", "profile", "site_id", "progress_percent",
                 "hosts_found", "ports_found", "created_at", "started_at",
                 "estimated_completion", "finished_at", "error"],
    "properties": {
        "id": UUID,
        "status": STATUS_VALUE,
        "target": {**TARGET, "description": "As given at start."},
        "profile": {"type": "string", "enum": list(PROFILES)},
        "site_id": _nullable(UUID),
        "progress_percent": {"type": "integer", "minimum": 0, "maximum": 100,
                             "description": "Probes done over probes planned."},
        "hosts_found": {**COUNT, "description": "Hosts seen up."},
        "ports_found": {**COUNT, "description": "Open ports."},
        "created_at": {**TIME, "description": "When the scan was accepted."},
        "started_at": _nullable({**TIME, "description": "Null while queued."}),
        "estimated_completion": _nullable({**TIME, "description": "Null until it can be estimated."}),
        "finished_at": _nullable(TIME),
        "error": _nullable({"type": "string", "description": "Why the scan failed; null unless failed."}),
        "excluded_addresses": {**COUNT, "description": "Target addresses skipped because the policy's "
                                                     "excluded_targets holds them."},
    },
}

CVE: Schema = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "string", "pattern": "^CVE-[0-9]{4}-[0-9]+$"},
        "cvss": _nullable({"type": "number", "minimum": 0, "maximum": 10}),
        "summary": _nullable({"type": "string"}),
    },
}

PORT: Schema = {
    "type": "object",
    "required": ["port", "protocol", "state", "service"],
    "properties": {
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "protocol": {"type": "string", "enum": ["tcp", "udp"], "description": "tcp today."},
        "state": {"type": "string", "enum": ["open", "closed", "filtered"]},
        "service": _nullable({"type": "string", "description": "e.g. \"SSH\", \"HTTPS\"."}),
        "product": _nullable({"type": "string"}),
        "version": _nullable({"type": "string"}),
        "banner": _nullable({"type": "string"}),
        "cpe": _nullable({"type": "string", "description": "CPE 2.3 name."}),
        "cves": {"type": "array", "items": _ref("Cve"), "description": "Deep scans only."},
    },
}

DEVICE: Schema = {
    "type": "object",
    "required": ["ip", "mac", "hostname", "vendor", "os_guess", "ports"],
    "properties": {
        "ip": {"type": "string", "format": "ipv4"},
        "mac": _nullable({"type": "string", "pattern": "^([0-9A-F]{2}:){5}[0-9A-F]{2}$",
                          "description": "On-link hosts only."}),
        "hostname": _nullable({"type": "string"}),
        "vendor": _nullable({"type": "string", "description": "Organisation that registered the "
                             "MAC's OUI (IEEE), or \"Randomized (locally administered)\"."}),
        "os_guess": _nullable({"type": "string", "description": "From the TCP/IP fingerprint of the "
                               "host's SYN-ACKs (initial TTL, window, option order, IP ID) and service "
                               "banners; null rather than a weak guess."}),
        "os_confidence": {"type": "number", "minimum": 0, "maximum": 1,
                          "description": "How firmly the evidence supports os_guess (only with it)."},
        "ports": {"type": "array", "items": _ref("Port"), "description": "Sorted by number."},
        "not_shown": {
            "type": "object", "additionalProperties": False,
            "description": "Ports in a state too common on this host to list, by state (like "
                           "nmap's \"Not shown: 995 closed ports\"); `open` only for a tarpit.",
            "properties": {"closed": COUNT, "filtered": COUNT, "open": COUNT},
        },
        "tarpit": {"type": "boolean", "enum": [True],
                   "description": "The host answered open on (nearly) every port probed (a tarpit or a "
                                  "SYN proxy): its open ports are counted in not_shown, not listed, and it "
                                  "gets no OS guess and no service detection. Absent otherwise."},
        "timed_out": {"type": "boolean",
                      "description": "The host exceeded the profile's per-host time budget."},
    },
}

SCAN_RESULT: Schema = {
    "type": "object",
    "required": ["id", "status", "target", "profile", "site_id", "started_at", "finished_at",
                 "devices_found", "open_ports_total", "duration_seconds", "page", "per_page", "devices"],
    "properties": {
        "id": UUID,
        "status": STATUS_VALUE,
        "target": TARGET,
        "profile": {"type": "string", "enum": list(PROFILES)},
        "site_id": _nullable(UUID),
        "started_at": _nullable(TIME),
        "finished_at": _nullable(TIME),
        "devices_found": {**COUNT, "description": "Devices of the whole result, on all pages."},
        "open_ports_total": {**COUNT, "description": "Open ports of the whole result, on all pages."},
        "duration_seconds": {**COUNT, "description": "From start to finish (or to now)."},
        "page": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
        "per_page": {"type": "integer", "minimum": RESULT_PER_PAGE[0], "maximum": RESULT_PER_PAGE[1]},
        "devices": {"type": "array", "items": _ref("Device"),
                    "description": "This page's devices, sorted by IP over all pages."},
    },
}

SCAN_LIST: Schema = {
    "type": "object",
    "required": ["scans", "page", "per_page", "total"],
    "properties": {
        "scans": {"type": "array", "items": _ref("ScanStatus"), "description": "Newest first."},
        "page": {"type": "integer", "minimum": 1},
        "per_page": {"type": "integer", "minimum": PER_PAGE[0], "maximum": PER_PAGE[1]},
        "total": {**COUNT, "description": "Scans matching the filters, on all pages."},
    },
}

PROBLEM: Schema = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri-reference"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "field": {"type": "string", "description": "The input at fault (422)."},
    },
}

HEALTH: Schema = {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}

CHECKS: Schema = {
    "type": "object",
    "required": ["store", "engine"],
    "description": "Each part's state: \"ok\", or why it is not ready.",
    "properties": {
        "store": {"type": "string", "description": "The database answers a read, and its file "
                                                   "system is writable and has room."},
        "engine": {"type": "string", "description": "Every engine worker has started and its "
                                                    "heartbeat is fresh."},
    },
}

READINESS: Schema = {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {"status": {"const": "ready"},
                   "checks": {**_ref("Checks"), "description": "Every part \"ok\"."}},
}

NOT_READY_PROBLEM: Schema = {
    "allOf": [_ref("Problem"), {"type": "object", "required": ["checks"],
                                "properties": {"type": {"const": NOT_READY}, "checks": _ref("Checks")}}],
}


def _json(schema: Schema, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {"application/problem+json": {"schema": _ref("Problem")}}}
    if headers:
        out["headers"] = headers
    return out


CHALLENGE = {"WWW-Authenticate": {"required": True, "schema": {"type": "string"},
                                  "description": "Bearer challenge (RFC 6750)."}}
RETRY_AFTER = {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"},
                               "description": "Seconds to wait before trying again."}}

RESPONSES: dict[str, dict[str, Any]] = {
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


def _use(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


AUTHED = {"401": _use("Unauthenticated"), "403": _use("Forbidden"), "429": _use("Throttled"),
          "500": _use("ServerError"), "503": _use("Unavailable")}
SCAN_ID = {"name": "scan_id", "in": "path", "required": True, "schema": {"type": "string"},
           "description": "A scan id; anything that is not one gets 404."}
LOCATION = {"Location": {"required": True, "schema": {"type": "string"},
                        "description": "`/api/v1/scans/{id}`"}}


def _paths() -> dict[str, Any]:
    return {
        "/api/v1/scans/start": {"post": {
            "operationId": "startScan",
            "summary": "Start a scan",
            "description": (
                "Validates the request, checks the target policy and size, and queues the scan. "
                "Answers 202 with `Location` and the scan's status (`queued` or `running`). The "
                "scan belongs to the requester (the token's name, or `unix:<uid>`).\n\n"
                "**Target policy.** A target must lie inside `policy.allowed_targets` (else 403 "
                "naming the first range outside). Blocks in `policy.socket_only_targets` (by "
                "default loopback 127.0.0.0/8 and link-local 169.254.0.0/16) may be scanned only "
                "over the Unix socket: over HTTPS, with any token, they get 403 naming the block. "
                "The policy is checked again when a queued scan starts: if a reload has narrowed "
                "it since, the scan ends `failed` with the reason, without sending a packet.\n\n"
                "**Queue limit.** An owner may have `daemon.max_queued_per_owner` scans waiting "
                "to run (or being started) at once; one more gets 429 with `Retry-After`.\n\n"
                "**Idempotency-Key.** With this header, a retried start returns the first scan "
                "instead of starting a second one: the same 202 and `Location`, plus "
                "`Idempotent-Replayed: true`; the body is that scan's status now. Keys belong "
                "to the requester and never expire (until the scan is deleted). A replay must "
                "send the same request: the same key with a different one (after validation: "
                "a site_id's case or a null field does not count) gets 422 with `field` "
                "`Idempotency-Key`, saying the key was reused with a different request."),
            "parameters": [{
                "name": "Idempotency-Key", "in": "header", "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX,
                           "pattern": "^[\\x21-\\x7e]+$"},
                "description": "Visible ASCII, at most 255 characters; e.g. a UUID per logical start.",
            }],
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref("StartRequest")}}},
            "responses": {
                "202": _json(_ref("ScanStatus"), "Queued (or replayed).", {
                    **LOCATION,
                    "Idempotent-Replayed": {"schema": {"type": "string", "const": "true"},
                                            "description": "Present on a replay."}}),
                "400": _use("MalformedJson"), "413": _use("TooLarge"),
                "415": _use("UnsupportedMediaType"), "422": _use("Invalid"),
                **AUTHED, "429": _use("StartThrottled"),
            },
        }},
        "/api/v1/scans/{scan_id}": {
            "get": {
                "operationId": "getScan",
                "summary": "A scan's status",
                "parameters": [SCAN_ID],
                "responses": {"200": _json(_ref("ScanStatus"), "The scan's status."),
                              "404": _use("NotFound"), **AUTHED},
            },
            "delete": {
                "operationId": "deleteScan",
                "summary": "Delete a scan",
                "description": "Deletes a finished scan (completed, failed or cancelled) and its "
                               "results; its Idempotency-Key may then be used again. A queued or "
                               "running scan must be stopped first (409). Needs scope `scan` for "
                               "the token's own scans, `admin` for any. Finished scans are also "
                               "deleted `daemon.retention_days` after they ended.",
                "parameters": [SCAN_ID],
                "responses": {
                    "204": {"description": "Deleted."},
                    "404": _use("NotFound"),
                    "409": _problem("The scan is queued or running: stop it first."),
                    **AUTHED,
                },
            },
        },
        "/api/v1/scans/{scan_id}/result": {"get": {
            "operationId": "getScanResult",
            "summary": "A scan's results",
            "description": "Available while the scan runs too (partial, `status: running`). "
                           "Devices are sorted by IP, their ports by number, and come a page at a "
                           f"time: `per_page` devices (default {RESULT_PER_PAGE_DEFAULT}, which holds "
                           "an ordinary scan's whole result) of page `page`. `devices_found` and "
                           "`open_ports_total` count the whole result; the last page is the one "
                           "where `page * per_page >= devices_found`, and a page past it is empty.",
            "parameters": [
                SCAN_ID,
                {"name": "page", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}},
                {"name": "per_page", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": RESULT_PER_PAGE[0], "maximum": RESULT_PER_PAGE[1],
                            "default": RESULT_PER_PAGE_DEFAULT}},
            ],
            "responses": {"200": _json(_ref("ScanResult"), "What the scan found so far: one page."),
                          "404": _use("NotFound"), "422": _use("Invalid"), **AUTHED},
        }},
        "/api/v1/scans/{scan_id}/stop": {"post": {
            "operationId": "stopScan",
            "summary": "Stop a scan",
            "description": "Stops a queued or running scan: it ends `cancelled` and keeps what it "
                           "found. A request body, if any, is ignored. Needs scope `scan` for the "
                           "token's own scans, `admin` for any.",
            "parameters": [SCAN_ID],
            "responses": {
                "200": _json(_ref("ScanStatus"), "The scan's status, now `cancelled`."),
                "404": _use("NotFound"),
                "409": _problem("The scan has already finished (completed, failed or cancelled)."),
                **AUTHED,
            },
        }},
        "/api/v1/scans": {"get": {
            "operationId": "listScans",
            "summary": "List scans, newest first",
            "description": "Every scan, or for a `scan` token only its own.",
            "parameters": [
                {"name": "page", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}},
                {"name": "per_page", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": PER_PAGE[0], "maximum": PER_PAGE[1],
                            "default": PER_PAGE_DEFAULT}},
                {"name": "status", "in": "query", "required": False, "schema": STATUS_VALUE},
                {"name": "site_id", "in": "query", "required": False, "schema": UUID},
            ],
            "responses": {"200": _json(_ref("ScanList"), "One page of scans; a page past the "
                                       "last is empty."),
                          "422": _use("Invalid"), **AUTHED},
        }},
        "/healthz": {"get": {
            "operationId": "health",
            "summary": "Liveness of the API",
            "security": [],
            "responses": {"200": _json(_ref("Health"), "The API answers."),
                          "500": _use("ServerError")},
        }},
        "/readyz": {"get": {
            "operationId": "ready",
            "summary": "Readiness of the daemon",
            "description": "Whether the daemon can take and run scans now: its database answers "
                           "and has room to write, and every engine worker's heartbeat is fresh. "
                           "For a load balancer or an orchestrator; `/healthz` only says that the "
                           "API answers. Nothing is written.",
            "security": [],
            "responses": {
                "200": _json(_ref("Readiness"), "Ready."),
                "503": {"description": "Not ready; `detail` and `checks` say what is not.",
                        "content": {"application/problem+json": {"schema": _ref("NotReady")}}},
                "500": _use("ServerError"),
            },
        }},
        "/metrics": {"get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "description": (
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
                "`read` on the TLS listener."),
            "responses": {
                "200": {"description": "The metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}}},
                **AUTHED,
            },
        }},
        "/api/v1/openapi.json": {"get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "The OpenAPI 3.1 document.",
                                  "content": {"application/json": {"schema": {"type": "object"}}}},
                          "500": _use("ServerError")},
        }},
    }


def document() -> dict[str, Any]:
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
            "schemas": {
                "StartRequest": START_REQUEST, "ScanStatus": SCAN_STATUS, "ScanResult": SCAN_RESULT,
                "Device": DEVICE, "Port": PORT, "Cve": CVE, "ScanList": SCAN_LIST,
                "Problem": PROBLEM, "Health": HEALTH, "Checks": CHECKS, "Readiness": READINESS,
                "NotReady": NOT_READY_PROBLEM,
            },
            "responses": RESPONSES,
        },
    }
