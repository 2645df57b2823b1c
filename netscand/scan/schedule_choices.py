"""A schedule's choices, named by the scheduler, the API and netscanctl alike. A module of its own,
importing nothing, so that netscanctl can offer them without loading the scheduler (croniter,
structlog, the store) it never runs."""

from __future__ import annotations

# schema.py's CHECKs of m007 list the same.
MISSED_POLICIES = ("run_once", "skip")  # the first is the default
DELIVERIES = ("all", "changes")  # the first is the default
