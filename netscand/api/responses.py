"""JSON responses serialized with orjson: plain documents and RFC 9457 problem details."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"


class JSONBody(Response):
    media_type = JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ProblemBody(JSONBody):
    media_type = PROBLEM_JSON
