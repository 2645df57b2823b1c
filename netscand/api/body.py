"""Reads a request body as one JSON value, never holding more than MAX_BODY bytes of it."""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from netscand.api.problems import BODY_TOO_LARGE, MALFORMED_JSON, UNSUPPORTED_MEDIA_TYPE, Problem

MAX_BODY = 1 << 20  # 1 MiB; a start request is a few hundred bytes
_DIGITS = re.compile(r"[0-9]+")  # str.isdigit() would also take "²", which int() refuses


def _too_large() -> Problem:
    return Problem(413, BODY_TOO_LARGE, "Request body too large",
                   f"the request body is larger than {MAX_BODY} bytes")


def _check_media_type(request: Request) -> None:
    # A missing Content-Type is taken as JSON (curl --data-binary without -H); anything that
    # says it is something else (a form, text) is refused rather than guessed at.
    value = request.headers.get("content-type")
    if value is None:
        return
    media = value.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise Problem(415, UNSUPPORTED_MEDIA_TYPE, "Unsupported media type",
                      f"the request body must be application/json, not {media or 'empty'}",
                      headers={"Accept-Post": "application/json"})


async def read_json(request: Request) -> Any:
    """The body parsed as JSON: 413 over MAX_BODY, 415 for a non-JSON type, 400 if malformed."""
    _check_media_type(request)
    declared = request.headers.get("content-length")
    if declared is not None:
        # Refused before a byte of the body is read; the server drains or drops the rest.
        if not _DIGITS.fullmatch(declared.strip()):
            raise Problem.plain(400, f"invalid Content-Length {declared!r}")
        if int(declared) > MAX_BODY:
            raise _too_large()
    chunks: list[bytes] = []
    size = 0
    try:
        # Counted as it streams too: a chunked body has no Content-Length to check.
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise _too_large()
            chunks.append(chunk)
    except ClientDisconnect:
        raise Problem.plain(400, "the client disconnected before the body was complete") from None
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise Problem(400, MALFORMED_JSON, "Malformed JSON",
                      f"the request body is not valid JSON: {exc}") from None
