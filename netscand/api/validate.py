"""API input read into its models (api/models.py): the start body, the queries, the Idempotency-Key.

msgspec checks shapes, types and bounds as it converts; what it cannot say (a port range's
order, the fields only profile custom takes) is checked here, after it. Each failure is a 422
naming the one field at fault, the first found. `bool` is never taken as a number, nor an
integral float (5000.0) as an integer: msgspec's conversion is strict.
"""

from __future__ import annotations

import functools
import re
import uuid
from typing import Any, TypeVar

import msgspec
import orjson
from starlette.datastructures import QueryParams

from netscand.api.models import (
    IDEMPOTENCY_KEY_MAX, IdempotencyKey, ListQuery, ResultQuery, StartRequest, in_order,
)
from netscand.api.problems import Problem
from netscand.scan.ports import PortSpecError, port_ranges
from netscand.scan.profiles import DEFAULT_PROFILE, PROFILE_ONLY_FIELDS, PROFILES, ScanRequest

Model = TypeVar("Model", bound=msgspec.Struct)
_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?:\.(?P<field>[A-Za-z_-]+))?(?P<rest>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>.*)`$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>.*)`$", re.DOTALL)
_INTEGER = re.compile(r"[0-9]+")
_INTEGERS = ("page", "per_page")  # the query parameters that are integers
# How many digits a query integer may have: Python's int() refuses strings of more than 4300.
_MAX_DIGITS = 20


def _convert(data: object, model: type[Model], whole: str) -> Model:
    """`data` as `model`, or a 422 Problem naming the field at fault (`whole` if it is all of it)."""
    try:
        return msgspec.convert(data, model)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc), model, whole) from None


def _invalid(message: str, model: type[msgspec.Struct], whole: str) -> Problem:
    known = ", ".join(model.__struct_fields__)
    if unknown := _UNKNOWN.match(message):
        name = unknown["field"]
        return Problem.invalid(name, f"unknown {_kind(whole)} {name!r}; known: {known}")
    if missing := _MISSING.match(message):
        return Problem.invalid(missing["field"], f"{missing['field']} is required")
    at = _AT.match(message)
    assert at is not None  # every string matches: each part of the pattern is optional
    if at["field"] is None:
        return Problem.invalid(whole, f"the request {whole}: {at['what']}")
    hint = _hints(model).get(at["field"], "")
    return Problem.invalid(at["field"], f"{at['field']}{at['rest']}: {at['what']}{hint}")


@functools.cache
def _hints(model: type[msgspec.Struct]) -> dict[str, str]:
    """What a message adds to a field's rule: its values if it has few, else an example."""
    _, schemas = msgspec.json.schema_components([model])
    hints = {}
    for name, schema in in_order(schemas[model.__name__]["properties"]).items():
        parts = (schema, *schema.get("anyOf", ()))
        values = [v for s in parts for v in s.get("enum", ())]
        examples = [e for s in parts for e in s.get("examples", ())]
        if values:
            hints[name] = f"; one of {', '.join(map(str, values))}"
        elif examples:
            hints[name] = f"; for example {orjson.dumps(examples[0]).decode()}"
    return hints


def _kind(whole: str) -> str:
    return "field" if whole == "body" else "query parameter"


def start_request(data: Any) -> ScanRequest:
    """A start body as a ScanRequest, or a 422 Problem naming the first field at fault."""
    req = _convert(data, StartRequest, "body")
    profile = PROFILES[req.profile or DEFAULT_PROFILE]
    for name in profile.requires:
        if getattr(req, name) is None:
            raise Problem.invalid(name, f"{name} is required with profile {profile.name}")
    for name in PROFILE_ONLY_FIELDS:
        if getattr(req, name) is not None and name not in profile.accepts:
            takers = " or ".join(p.name for p in PROFILES.values() if name in p.accepts)
            raise Problem.invalid(name, f"{name} can only be given with profile {takers}; "
                                  f"profile {profile.name} sets it itself")
    if req.ports is not None:
        try:
            port_ranges(req.ports)  # merged ranges: cheap however many ports they cover
        except PortSpecError as exc:
            raise Problem.invalid("ports", f"ports: {exc}") from None
    fields = msgspec.structs.asdict(req)
    # One spelling, so the ?site_id= filter finds a site however a client capitalized it.
    return ScanRequest(**fields | {"profile": profile.name, "site_id": _canonical(req.site_id)})


def _canonical(site_id: str | None) -> str | None:
    return None if site_id is None else str(uuid.UUID(site_id))


def _query(params: QueryParams, model: type[Model]) -> Model:
    """The query as `model`; a repeated parameter is refused rather than one of them ignored."""
    seen: dict[str, object] = {}
    for name, value in params.multi_items():
        if name in seen:
            raise Problem.invalid(name, f"query parameter {name!r} given more than once")
        seen[name] = value
    for name in _INTEGERS:
        if name in seen:
            seen[name] = _integer(name, str(seen[name]))
    return _convert(seen, model, "query")


def _integer(name: str, text: str) -> int:
    # Read without its leading zeros; too many digits is out of any bound the model sets.
    digits = text.lstrip("0") or "0"
    if not _INTEGER.fullmatch(text):
        raise Problem.invalid(name, f"{name} must be an integer, not {text[:40]!r}")
    if len(digits) > _MAX_DIGITS:
        raise Problem.invalid(name, f"{name} is out of range: {text[:40]!r}")
    return int(digits)


def list_query(params: QueryParams) -> ListQuery:
    """?page=&per_page=&status=&site_id="""
    query = _query(params, ListQuery)
    if isinstance(query.site_id, str):
        query.site_id = str(uuid.UUID(query.site_id))
    return query


def result_query(params: QueryParams) -> ResultQuery:
    """?page=&per_page= of a result."""
    return _query(params, ResultQuery)


def idempotency_key(value: str | None) -> str | None:
    """The Idempotency-Key header, when given."""
    if value is None:
        return None
    try:
        return msgspec.convert(value, IdempotencyKey)
    except msgspec.ValidationError:
        raise Problem.invalid("Idempotency-Key", "the Idempotency-Key header must be 1-"
                              f"{IDEMPOTENCY_KEY_MAX} visible ASCII characters") from None
