"""Sites: named places a scan belongs to. Each has its own inventory of devices (store/inventory.py),
so the same private address at two sites is two devices.

A site is deleted with its inventory (its devices' addresses, ports, CVEs and changes go by
cascade), never while a scan of it is queued or running: that scan would merge into a site
that is gone. The check and the deletion are one transaction, and so are a new scan's check
that its site exists and its insertion (create_scan), so neither can slip between the other's
two steps.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlite_utils import Database

from netscand.store import clock, scans

COLUMNS = ("id", "name", "created_at", "updated_at")
_COLUMNS = ", ".join(COLUMNS)


class NameTaken(ValueError):
    """Another site has this name."""


class SiteBusy(Exception):
    """Scans of the site are queued or running; `scan_ids` names them, oldest first."""

    def __init__(self, site_id: str, scan_ids: list[str]) -> None:
        super().__init__(f"site {site_id} has scans queued or running: {', '.join(scan_ids)}")
        self.scan_ids = scan_ids


class UnknownSite(LookupError):
    """A scan names a site that does not exist."""


def create(db: Database, name: str) -> dict[str, Any]:
    now = clock.utc_now()
    site = {"id": str(uuid.uuid4()), "name": name, "created_at": now, "updated_at": now}
    with db.atomic():
        _free(db, name, None)
        db.execute(f"INSERT INTO sites ({_COLUMNS}) VALUES (?, ?, ?, ?)", [site[k] for k in COLUMNS])
    return site


def get(db: Database, site_id: str) -> dict[str, Any] | None:
    return next(iter(db.query(f"SELECT {_COLUMNS} FROM sites WHERE id = ?", [site_id])), None)


def page(db: Database, number: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
    """One page of sites by name (the unique index's order), and how many there are."""
    if number < 1 or per_page < 1:
        raise ValueError(f"page and per_page start at 1, got page={number} per_page={per_page}")
    total = next(db.query("SELECT count(*) AS n FROM sites"))["n"]
    rows = db.query(f"SELECT {_COLUMNS} FROM sites ORDER BY name LIMIT ? OFFSET ?",
                    [per_page, (number - 1) * per_page])
    return list(rows), total


def rename(db: Database, site_id: str, name: str) -> dict[str, Any] | None:
    """The renamed site; None if there is no such site."""
    with db.atomic():
        if get(db, site_id) is None:
            return None
        _free(db, name, site_id)
        db.execute("UPDATE sites SET name = ?, updated_at = ? WHERE id = ?", [name, clock.utc_now(), site_id])
    return get(db, site_id)


def delete(db: Database, site_id: str) -> bool:
    """Delete the site and its inventory; False if there is no such site. SiteBusy while a scan
    of it is queued or running. Finished scans keep their results and their site_id."""
    with db.atomic():
        if get(db, site_id) is None:
            return False
        active = [r["id"] for r in db.query(
            "SELECT id FROM scans WHERE site_id = ? AND status IN ('queued', 'running') "
            "ORDER BY created_at, id", [site_id])]
        if active:
            raise SiteBusy(site_id, active)
        db.execute("DELETE FROM inventory WHERE site_key = ?", [site_id])
        db.execute("DELETE FROM sites WHERE id = ?", [site_id])
    return True


def create_scan(db: Database, scan: dict[str, Any]) -> dict[str, Any]:
    """scans.create, refused with UnknownSite if the scan names a site that does not exist."""
    with db.atomic():
        if scan.get("site_id") is not None and get(db, scan["site_id"]) is None:
            raise UnknownSite(scan["site_id"])
        return scans.create(db, scan)


def _free(db: Database, name: str, site_id: str | None) -> None:
    """NameTaken unless `name` is free or already the name of site `site_id`."""
    holder = next(iter(db.query("SELECT id FROM sites WHERE name = ?", [name])), None)
    if holder is not None and holder["id"] != site_id:
        raise NameTaken(f"a site named {name!r} already exists: {holder['id']}")
