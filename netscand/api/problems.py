"""Every error the API sends is an RFC 9457 problem: one exception type and its response.

`type` is "about:blank" for plain HTTP conditions (unknown route, wrong method, server error,
where the title is the status's reason phrase as RFC 9457 asks) and a URN of ours for the
conditions a client may want to tell apart. Validation problems also carry `field`.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus

from netscand.api.responses import ProblemBody
from netscand.scan.errors import ScanError
from netscand.store import StoreError

URN = "urn:netscand:problem:"
MALFORMED_JSON = URN + "malformed-json"
UNSUPPORTED_MEDIA_TYPE = URN + "unsupported-media-type"
UNAUTHENTICATED = URN + "unauthenticated"
INSUFFICIENT_SCOPE = URN + "insufficient-scope"
FORBIDDEN = URN + "forbidden"
NOT_FOUND = URN + "not-found"
CONFLICT = URN + "conflict"
BODY_TOO_LARGE = URN + "body-too-large"
INVALID_FIELD = URN + "invalid-field"
UNPROCESSABLE = URN + "unprocessable"
UNAVAILABLE = URN + "unavailable"
TOO_MANY_AUTH_FAILURES = URN + "too-many-auth-failures"
QUEUE_FULL = URN + "queue-full"
NOT_READY = URN + "not-ready"
BLANK = "about:blank"

STORE_RETRY_AFTER_S = 5  # long enough for another writer's transaction to end, short enough to matter

# What a ScanError of each status means to a client; a field always makes it invalid-field.
_SCAN_ERROR_TYPES = {403: FORBIDDEN, 404: NOT_FOUND, 409: CONFLICT, 422: UNPROCESSABLE, 429: QUEUE_FULL,
                     503: UNAVAILABLE}


class Problem(Exception):
    """Raised anywhere below the app; the app turns it into its problem+json response."""

    def __init__(self, status: int, type_: str, title: str, detail: str, *,
                 field: str | None = None, headers: Mapping[str, str] | None = None,
                 extensions: Mapping[str, object] | None = None) -> None:
        super().__init__(detail)
        self.status, self.type, self.title, self.detail = status, type_, title, detail
        self.field = field
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})  # RFC 9457 extension members of this type

    @classmethod
    def plain(cls, status: int, detail: str, headers: Mapping[str, str] | None = None) -> Problem:
        """An about:blank problem: its title is the reason phrase."""
        return cls(status, BLANK, HTTPStatus(status).phrase, detail, headers=headers)

    @classmethod
    def invalid(cls, field: str, detail: str) -> Problem:
        return cls(422, INVALID_FIELD, "Invalid field", detail, field=field)

    @classmethod
    def from_scan_error(cls, exc: ScanError) -> Problem:
        type_ = INVALID_FIELD if exc.field else _SCAN_ERROR_TYPES.get(exc.status, URN + "scan-error")
        return cls(exc.status, type_, exc.title, exc.detail, field=exc.field, headers=exc.headers)

    @classmethod
    def from_store_error(cls, exc: StoreError) -> Problem:
        """A database that is locked, full or broken is the daemon's state, not the request's
        fault: 503, to be retried, with the reason but not the file's path."""
        return cls(503, UNAVAILABLE, "Storage unavailable",
                   f"the daemon's database cannot be used now ({store_reason(exc)}); retry later",
                   headers={"Retry-After": str(STORE_RETRY_AFTER_S)})

    def body(self) -> dict[str, object]:
        doc: dict[str, object] = {**self.extensions, "type": self.type, "title": self.title,
                                  "status": self.status, "detail": self.detail}
        if self.field is not None:
            doc["field"] = self.field
        return doc

    def response(self) -> ProblemBody:
        return ProblemBody(self.body(), status_code=self.status, headers=self.headers)


def store_reason(exc: StoreError) -> str:
    """Why the store failed, in a few words fit for any client: the StoreError's own message
    names the database file, which only the daemon's log should show."""
    return exc.reason
