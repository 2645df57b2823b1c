"""API tokens: shown once, stored as hashes, verified, listed and revoked."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from netscand.store import Store, StoreError

LISTED = {"name", "scope", "created_at", "last_used_at", "revoked"}


def _db_bytes(db_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(db_path.parent.glob(db_path.name + "*")))


def test_create_returns_the_plaintext_and_stores_only_its_hash(store: Store, db_path: Path) -> None:
    token = store.create_token("ci", "scan")
    assert token.startswith("nsd_") and len(token) >= 4 + 43
    assert store.create_token("grafana", "read") != token
    with sqlite3.connect(db_path) as conn:
        stored = conn.execute("SELECT hash FROM tokens WHERE name = 'ci'").fetchone()[0]
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    raw = _db_bytes(db_path)
    assert token.encode() not in raw and token[4:].encode() not in raw
    assert stored.encode() in raw  # the search above does look at the right bytes


def test_verify(store: Store) -> None:
    token = store.create_token("ci", "scan")
    assert store.verify_token(token) == {"name": "ci", "scope": "scan"}
    assert store.verify_token(token[:-1]) is None
    assert store.verify_token("") is None
    assert store.verify_token(hashlib.sha256(token.encode()).hexdigest()) is None  # the hash is no password


def test_revoked_token_no_longer_verifies(store: Store) -> None:
    token = store.create_token("ci", "admin")
    assert store.revoke_token("ci") is True
    assert store.verify_token(token) is None
    assert store.revoke_token("ci") is False
    assert store.revoke_token("nobody") is False


def test_names_are_unique_among_active_tokens(store: Store) -> None:
    old = store.create_token("ci", "read")
    with pytest.raises(StoreError, match="already exists"):
        store.create_token("ci", "admin")
    store.revoke_token("ci")
    new = store.create_token("ci", "admin")
    assert store.verify_token(old) is None
    assert store.verify_token(new) == {"name": "ci", "scope": "admin"}


def test_list_never_shows_hashes(store: Store) -> None:
    first = store.create_token("ci", "scan")
    store.create_token("grafana", "read")
    store.revoke_token("grafana")
    listed = store.list_tokens()
    assert [(t["name"], t["scope"], t["revoked"]) for t in listed] == [
        ("ci", "scan", False), ("grafana", "read", True),
    ]
    assert all(set(t) == LISTED for t in listed)
    digest = hashlib.sha256(first.encode()).hexdigest()
    assert all(digest not in str(v) and first not in str(v) for t in listed for v in t.values())


def test_last_used_is_recorded_at_most_once_a_minute(store: Store, db_path: Path) -> None:
    token = store.create_token("ci", "read")
    assert store.list_tokens()[0]["last_used_at"] is None
    store.verify_token(token)
    assert store.list_tokens()[0]["last_used_at"] is not None

    def set_last_used(value: str) -> None:
        with sqlite3.connect(db_path) as conn:
            conn.execute("UPDATE tokens SET last_used_at = ?", [value])

    recent = (datetime.now(UTC) - timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    set_last_used(recent)
    store.verify_token(token)
    assert store.list_tokens()[0]["last_used_at"] == recent
    set_last_used("2026-01-01T00:00:00Z")
    store.verify_token(token)
    assert store.list_tokens()[0]["last_used_at"] > "2026-01-01T00:00:00Z"


def test_refusals(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown scope"):
        store.create_token("ci", "root")
    for name in ("", "unix:0", "has space", "x" * 65):
        with pytest.raises(ValueError, match="token name"):
            store.create_token(name, "read")
    assert store.list_tokens() == []
