"""A scan's statuses, in the order of its life: the store's CHECK, the API's enum and the CLI's
choices all list these. A module of its own, importing nothing, so that netscanctl can name them
without loading the store (and sqlite_utils) it never uses."""

from __future__ import annotations

# schema.py's CHECK must list the same (tests/store/test_store_schema.py holds them equal).
STATUSES = ("queued", "running", "completed", "failed", "cancelled")
FINISHED = STATUSES[2:]  # a scan in one of these never changes again
# A webhook delivery's (the store's CHECK on deliveries.status lists the same).
DELIVERY_STATUSES = ("pending", "delivered", "failed")
