"""API input read into its models (api/models.py): the start body, the queries, the Idempotency-Key.

msgspec checks shapes, types and bounds as it converts; what it cannot say (a port range's
order, a source port range's bounds, the fields only some profiles take, the fields that need
per-host pacing) is checked here, after it. Each failure is a 422
naming the one field at fault, the first found: an unknown field (by name), then a missing
target, then the fields in documented order. `bool` is never taken as a number, nor an
integral float (5000.0) as an integer: msgspec's conversion is strict.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec
import orjson
from starlette.datastructures import QueryParams

from netscand.api.models import (
    IDEMPOTENCY_KEY_MAX, IdempotencyKey, ListQuery, ResultQuery, StartRequest, in_order,
)
from netscand.api.problems import Problem
from netscand.scan.ports import PortSpecError, named, port_ranges, source_port_range
from netscand.scan.profiles import (
    DEFAULT_PROFILE,
    PROFILE_ONLY_FIELDS,
    PROFILES,
    ScanRequest,
    accepting,
    contradiction,
)
from netscand.typed import failure

Model = TypeVar("Model", bound=msgspec.Struct)
_INTEGER = re.compile(r"[0-9]+")
# How many digits a query integer may have: Python's int() refuses strings of more than 4300.
_MAX_DIGITS = 20


def _convert(data: object, model: type[Model], whole: str) -> Model:
    """`data` as `model`, or a 422 Problem naming the field at fault (`whole` if it is all of it).

    msgspec names the first fault in the client's order of keys; the API names an unknown field
    first (the first by name), then a missing or null required one, then the first in the
    model's (documented) order, whatever order the client wrote them in."""
    if isinstance(data, Mapping):
        _check_names(data, model, whole)
        for name in _required(model):
            if data.get(name) is None:
                raise Problem.invalid(name, f"{name} is required")
        data = {name: data[name] for name in model.__struct_fields__ if name in data}
    try:
        return msgspec.convert(data, model)
    except msgspec.ValidationError as exc:
        raise _invalid(exc, model, whole) from None


def _check_names(data: Mapping[str, object], model: type[msgspec.Struct], whole: str) -> None:
    if unknown := sorted(name for name in data if name not in model.__struct_fields__):
        raise _unknown(unknown[0], model, whole)


def _unknown(name: str, model: type[msgspec.Struct], whole: str) -> Problem:
    known = ", ".join(model.__struct_fields__)
    return Problem.invalid(name, f"unknown {_kind(whole)} {name!r}; known: {known}")


def _fields(model: type[msgspec.Struct]) -> tuple[msgspec.inspect.Field, ...]:
    info = msgspec.inspect.type_info(model)
    assert isinstance(info, msgspec.inspect.StructType)
    return info.fields


@functools.cache
def _required(model: type[msgspec.Struct]) -> tuple[str, ...]:
    return tuple(f.name for f in _fields(model) if f.required)


def _invalid(exc: msgspec.ValidationError, model: type[msgspec.Struct], whole: str) -> Problem:
    fault = failure(exc)
    if fault.unknown is not None:
        return _unknown(fault.unknown, model, whole)
    if fault.missing is not None:
        return Problem.invalid(fault.missing, f"{fault.missing} is required")
    if not fault.steps:
        return Problem.invalid(whole, f"the request {whole}: {fault.message}")
    field, *rest = fault.steps
    where = f"{field}" + "".join(f"[{step}]" for step in rest)
    hint = _hints(model).get(str(field), "")
    return Problem.invalid(str(field), f"{where}: {fault.message}{hint}")


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
    req = _start_body(data)
    profile = PROFILES[req.profile or DEFAULT_PROFILE]
    for name in profile.requires:
        if getattr(req, name) is None:
            raise Problem.invalid(name, f"{name} is required with profile {profile.name}")
    for name in PROFILE_ONLY_FIELDS:
        if getattr(req, name) is not None and name not in profile.accepts:
            takers = " or ".join(accepting(name))
            raise Problem.invalid(name, f"{name} can only be given with profile {takers}; "
                                  f"profile {profile.name} sets it itself")
    fields = msgspec.structs.asdict(req)
    # One spelling, so the ?site_id= filter finds a site however a client capitalized it.
    request = ScanRequest(**fields | {"profile": profile.name, "site_id": _canonical(req.site_id)})
    if clash := contradiction(request):
        raise Problem.invalid(*clash)
    return request


# The fields whose text is read after msgspec checked its shape (port specifications, read by
# port_ranges as merged ranges, cheap however many ports they cover; a source port range),
# each checked in its documented place.
READ_FIELDS: dict[str, Callable[[Any], object]] = {
    "ports": port_ranges, "udp_ports": port_ranges, "source_ports": source_port_range}


def _read_field(name: str, value: Any) -> None:
    try:
        named(name, READ_FIELDS[name], value)
    except PortSpecError as exc:
        raise Problem.invalid(name, str(exc)) from None


def _start_body(data: Any) -> StartRequest:
    """The body as its model, with the fields whose text is read here (READ_FIELDS) read in
    their place in documented order: after the fields before them, before a fault of any
    field after them."""
    try:
        req = _convert(data, StartRequest, "body")
    except Problem as problem:
        for name in READ_FIELDS:  # msgspec let them through: it stops at the first fault
            if _after(name, problem.field) and data.get(name) is not None:
                _read_field(name, data[name])
        raise
    for name in READ_FIELDS:
        if (value := getattr(req, name)) is not None:
            _read_field(name, value)
    return req


def _after(name: str, field: str | None) -> bool:
    order = StartRequest.__struct_fields__
    return field in order and order.index(field) > order.index(name)


def _canonical(site_id: str | None) -> str | None:
    return None if site_id is None else str(uuid.UUID(site_id))


def _query(params: QueryParams, model: type[Model]) -> Model:
    """The query as `model`; a repeated parameter is refused rather than one of them ignored.
    The first fault named is the first parameter unknown or repeated, in the client's order,
    then the first bad one in the model's order (each checked whole, bounds included)."""
    seen: dict[str, object] = {}
    for name, value in params.multi_items():
        if name not in model.__struct_fields__:
            raise _unknown(name, model, "query")
        if name in seen:
            raise Problem.invalid(name, f"query parameter {name!r} given more than once")
        seen[name] = value
    given: dict[str, object] = {}
    for name in model.__struct_fields__:
        if name in seen:
            given[name] = _integer(name, str(seen[name])) if name in _integers(model) else seen[name]
            _convert({name: given[name]}, model, "query")  # its bounds, before a later one's text
    return _convert(given, model, "query")


@functools.cache
def _integers(model: type[msgspec.Struct]) -> frozenset[str]:
    """The parameters that are integers, read from the query's text before msgspec sees them."""
    integer = msgspec.inspect.IntType
    return frozenset(f.name for f in _fields(model) if isinstance(_unwrapped(f.type), integer))


def _unwrapped(kind: msgspec.inspect.Type) -> msgspec.inspect.Type:
    while isinstance(kind, msgspec.inspect.Metadata):
        kind = kind.type
    return kind


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


def body_as(data: Any, model: type[Model]) -> Model:
    """A request body as `model` (the routes after /scans), or a 422 naming the field at fault."""
    return _convert(data, model, "body")


def query_as(params: QueryParams, model: type[Model]) -> Model:
    """A query as `model` (the routes after /scans), or a 422 naming the parameter at fault."""
    return _query(params, model)
