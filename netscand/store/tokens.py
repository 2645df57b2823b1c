"""API tokens: kept only as SHA-256 hashes, so a copy of the database grants no access.

A hash without a salt is enough here: tokens are 256 random bits, not passwords to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from sqlite_utils import Database

from netscand.store import clock
from netscand.store.errors import StoreError

SCOPES = frozenset({"read", "scan", "admin"})
PREFIX = "nsd_"  # lets secret scanners and humans recognise a leaked token
TOUCH_EVERY_S = 60  # last_used_at is a hint for the admin; a write per request would cost more than it tells
# No ':' so a token name can never pass for a Unix-socket owner ('unix:<uid>').
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def create(db: Database, name: str, scope: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"token name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}: use one of {', '.join(sorted(SCOPES))}")
    token = PREFIX + secrets.token_urlsafe(32)
    with db.atomic():
        if list(db.query("SELECT 1 FROM tokens WHERE name = ? AND revoked_at IS NULL", [name])):
            raise StoreError(f"a token named {name!r} already exists")
        db.execute(
            "INSERT INTO tokens (name, scope, hash, created_at) VALUES (?, ?, ?, ?)",
            [name, scope, _hash(token), clock.utc_now()],
        )
    return token


def find(db: Database, token: str) -> dict[str, Any] | None:
    """The active token row with this plaintext's hash: id, name, scope, hash, last_used_at."""
    digest = _hash(token)
    rows = list(db.query(
        "SELECT id, name, scope, hash, last_used_at FROM tokens WHERE hash = ? AND revoked_at IS NULL",
        [digest],
    ))
    # The indexed lookup already matched; compare_digest keeps the final check constant-time anyway.
    if not rows or not hmac.compare_digest(rows[0]["hash"], digest):
        return None
    return rows[0]


def is_stale(last_used_at: str | None) -> bool:
    return last_used_at is None or clock.seconds_since(last_used_at) >= TOUCH_EVERY_S


def touch(db: Database, token_id: int) -> None:
    with db.atomic():
        db.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?", [clock.utc_now(), token_id])


def listing(db: Database) -> list[dict[str, Any]]:
    return [
        {**row, "revoked": bool(row["revoked"])}
        for row in db.query(
            "SELECT name, scope, created_at, last_used_at, revoked_at IS NOT NULL AS revoked FROM tokens "
            "ORDER BY created_at, id"
        )
    ]


def revoke(db: Database, name: str) -> bool:
    with db.atomic():
        cursor = db.execute(
            "UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", [clock.utc_now(), name],
        )
    return cursor.rowcount > 0


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
