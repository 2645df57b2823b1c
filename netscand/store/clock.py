"""Timestamps as the API shows them: ISO 8601 in UTC with a trailing 'Z'."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utc_now(offset: timedelta = timedelta()) -> str:
    """Now, or `offset` from now (an estimated completion, a retention cutoff)."""
    return (datetime.now(UTC) + offset).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


def seconds_since(timestamp: str) -> float:
    return (datetime.now(UTC) - parse(timestamp)).total_seconds()


def check(name: str, value: object) -> None:
    """Refuse anything but None or a 'Z' timestamp: scans are ordered by these strings as text."""
    if value is None:
        return
    try:
        valid = isinstance(value, str) and value.endswith("Z") and parse(value).tzinfo is not None
    except ValueError:
        valid = False
    if not valid:
        raise ValueError(f"{name} must be an ISO 8601 UTC timestamp ending in 'Z', got {value!r}")
