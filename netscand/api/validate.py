"""Shape and type checks of API input: the start body, the list query, the Idempotency-Key.

Each failure is a 422 naming the one field at fault (the first found, in the order the fields
are documented). JSON null in an optional field means "not given": the API itself writes null
for absent values (site_id), so a document it sent can be sent back. `bool` is never taken as
a number, although Python makes it an int subclass.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import QueryParams

from netscand.api.problems import Problem
from netscand.scan.ports import PortSpecError, port_ranges
from netscand.scan.profiles import PROFILES, ScanRequest

STATUSES = ("queued", "running", "completed", "failed", "cancelled")

TIMEOUT_MS = (1, 600_000)
MAX_CONCURRENT = (1, 65_536)
RETRIES = (0, 10)
PER_PAGE = (1, 100)
PER_PAGE_DEFAULT = 25
# Devices per page of a result: the default holds an ordinary scan's whole result; the page is
# built in memory and sent in one piece, so the cap keeps it to a few megabytes.
RESULT_PER_PAGE = (1, 1000)
RESULT_PER_PAGE_DEFAULT = 1000
MAX_PAGE = 2**31 - 1  # keeps (page - 1) * per_page inside SQLite's 64-bit integers
IDEMPOTENCY_KEY_MAX = 255
# Slower than a probe a second a scan would hold a running slot for days (the fuzzer sent 5e-324).
MIN_RATE = 1.0
# What the fixed profiles decide themselves; only `custom` lets the client choose them.
CUSTOM_ONLY = ("ports", "enable_profiling", "enable_cve_match")

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DIGITS = re.compile(r"[0-9]+")
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")


def _is_int(value: object) -> bool:
    return type(value) is int  # not bool


def _int_in(name: str, value: object, bounds: tuple[int, int]) -> int:
    lo, hi = bounds
    if not _is_int(value):
        shown = repr(value) if isinstance(value, float) else _json_type(value)
        raise Problem.invalid(name, f"{name} must be an integer, not {shown}")
    assert isinstance(value, int)
    if not lo <= value <= hi:
        raise Problem.invalid(name, f"{name} must be between {lo} and {hi}, not {value}")
    return value


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise Problem.invalid(name, f"{name} must be true or false, not {_json_type(value)}")
    return value


def _rate(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Problem.invalid(name, f"{name} must be a number, not {_json_type(value)}")
    if not (math.isfinite(value) and value >= MIN_RATE):
        raise Problem.invalid(name, f"{name} must be at least {MIN_RATE:g} probe per second, not {value}")
    return float(value)


def _target(name: str, value: object) -> str | list[str]:
    # What the strings mean (address, CIDR, range, hostname) is the orchestrator's to judge.
    if isinstance(value, str):
        if not value.strip():
            raise Problem.invalid(name, f"{name} must not be empty")
        return value
    if isinstance(value, list):
        if not value:
            raise Problem.invalid(name, f"{name} must not be an empty list")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise Problem.invalid(name, f"{name}[{i}] must be a string, not {_json_type(item)}")
            if not item.strip():
                raise Problem.invalid(name, f"{name}[{i}] must not be empty")
        return list(value)
    raise Problem.invalid(name, f"{name} must be a string or a list of strings, not {_json_type(value)}")


def _profile(name: str, value: object) -> str:
    if not isinstance(value, str) or value not in PROFILES:
        shown = repr(value) if isinstance(value, str) else _json_type(value)
        raise Problem.invalid(name, f"{name} must be one of {', '.join(PROFILES)}, not {shown}")
    return value


def _site_id(name: str, value: object) -> str:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        shown = repr(value) if isinstance(value, str) else _json_type(value)
        raise Problem.invalid(name, f"{name} must be a UUID such as "
                              f"'123e4567-e89b-12d3-a456-426614174000', not {shown}")
    # One spelling, so the ?site_id= filter finds a site however a client capitalized it.
    return str(uuid.UUID(value))


def _ports(name: str, value: object) -> list[int | str]:
    if not isinstance(value, list):
        raise Problem.invalid(name, f"{name} must be a list of port numbers and 'a-b' ranges, "
                              f"not {_json_type(value)}")
    try:
        port_ranges(value)  # merged ranges: cheap however many ports they cover
    except PortSpecError as exc:
        raise Problem.invalid(name, f"{name}: {exc}") from None
    return list(value)


# Every field of a start request, in documented order, with its check.
_START_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "target": _target,
    "profile": _profile,
    "site_id": _site_id,
    "ports": _ports,
    "timeout_ms": lambda n, v: _int_in(n, v, TIMEOUT_MS),
    "max_concurrent": lambda n, v: _int_in(n, v, MAX_CONCURRENT),
    "enable_profiling": _bool,
    "enable_cve_match": _bool,
    "rate": _rate,
    "retries": lambda n, v: _int_in(n, v, RETRIES),
    "skip_discovery": _bool,
}


def start_request(data: object) -> ScanRequest:
    """A start body as a ScanRequest, or a 422 Problem naming the first field at fault."""
    if not isinstance(data, dict):
        raise Problem.invalid("body", f"the request body must be a JSON object, not {_json_type(data)}")
    unknown = sorted(k for k in data if k not in _START_FIELDS)
    if unknown:
        raise Problem.invalid(unknown[0], f"unknown field {unknown[0]!r}; known fields: "
                              f"{', '.join(_START_FIELDS)}")
    given = {k: v for k, v in data.items() if v is not None}
    if "target" not in given:
        raise Problem.invalid("target", "target is required")
    values = {name: check(name, given[name]) for name, check in _START_FIELDS.items() if name in given}
    profile = values.setdefault("profile", "normal")
    if profile == "custom" and "ports" not in values:
        raise Problem.invalid("ports", "ports is required with profile custom")
    if profile != "custom":
        for name in CUSTOM_ONLY:
            if name in values:
                raise Problem.invalid(name, f"{name} can only be given with profile custom; "
                                      f"profile {profile} sets it itself")
    return ScanRequest(**values)


@dataclass(frozen=True)
class ListQuery:
    page: int
    per_page: int
    status: str | None
    site_id: str | None


def _query_int(name: str, text: str, bounds: tuple[int, int]) -> int:
    lo, hi = bounds
    # Read without its leading zeros, and only when no longer than the bound: Python's int()
    # refuses strings of more than 4300 digits (a 500, before this).
    digits = text.lstrip("0") or "0"
    if not _DIGITS.fullmatch(text) or len(digits) > len(str(hi)) or not lo <= int(digits) <= hi:
        raise Problem.invalid(name, f"{name} must be an integer between {lo} and {hi}, not {text[:40]!r}")
    return int(digits)


def _query(params: QueryParams, known: tuple[str, ...]) -> dict[str, str]:
    """The query's parameters by name; unknown or repeated ones are refused, not ignored."""
    seen: dict[str, str] = {}
    for name, value in params.multi_items():
        if name not in known:
            raise Problem.invalid(name, f"unknown query parameter {name!r}; known: {', '.join(known)}")
        if name in seen:
            raise Problem.invalid(name, f"query parameter {name!r} given more than once")
        seen[name] = value
    return seen


def _page(seen: dict[str, str], per_page: tuple[int, int], default: int) -> tuple[int, int]:
    page = _query_int("page", seen["page"], (1, MAX_PAGE)) if "page" in seen else 1
    return page, _query_int("per_page", seen["per_page"], per_page) if "per_page" in seen else default


def list_query(params: QueryParams) -> ListQuery:
    """?page=&per_page=&status=&site_id="""
    seen = _query(params, ("page", "per_page", "status", "site_id"))
    page, per_page = _page(seen, PER_PAGE, PER_PAGE_DEFAULT)
    status = seen.get("status")
    if status is not None and status not in STATUSES:
        raise Problem.invalid("status", f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    site_id = _site_id("site_id", seen["site_id"]) if "site_id" in seen else None
    return ListQuery(page, per_page, status, site_id)


def result_query(params: QueryParams) -> tuple[int, int]:
    """?page=&per_page= of a result: (page, per_page)."""
    return _page(_query(params, ("page", "per_page")), RESULT_PER_PAGE, RESULT_PER_PAGE_DEFAULT)


def idempotency_key(value: str | None) -> str | None:
    """The Idempotency-Key header: 1-255 visible ASCII characters, when given."""
    if value is None:
        return None
    if len(value) > IDEMPOTENCY_KEY_MAX or not _VISIBLE_ASCII.fullmatch(value):
        raise Problem.invalid("Idempotency-Key", "the Idempotency-Key header must be 1-"
                              f"{IDEMPOTENCY_KEY_MAX} visible ASCII characters")
    return value


def _json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
