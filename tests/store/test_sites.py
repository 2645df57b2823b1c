"""Sites in the store: unique names, pages by name, renames, and a deletion that takes the site's
inventory with it but never while a scan of the site is queued or running."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from netscand.store import Store, sites
from netscand.store.compare import Covered
from netscand.store.inventory import merge


def create(store: Store, name: str) -> dict[str, Any]:
    return store.call("test", sites.create, name)


def test_a_site_is_created_read_and_listed_by_name(store: Store) -> None:
    b, a = create(store, "b office"), create(store, "a office")
    assert str(uuid.UUID(a["id"])) == a["id"] and a["created_at"] == a["updated_at"]
    assert store.call("test", sites.get, a["id"]) == a
    assert store.call("test", sites.page, 1, 25) == ([a, b], 2)
    assert store.call("test", sites.page, 2, 1) == ([b], 2)
    assert store.call("test", sites.get, str(uuid.uuid4())) is None


def test_names_are_unique_also_on_rename(store: Store) -> None:
    a, b = create(store, "a"), create(store, "b")
    with pytest.raises(sites.NameTaken, match=a["id"]):
        create(store, "a")
    with pytest.raises(sites.NameTaken):
        store.call("test", sites.rename, b["id"], "a")
    assert store.call("test", sites.rename, a["id"], "a")["name"] == "a"  # its own name is free to it
    renamed = store.call("test", sites.rename, b["id"], "c")
    assert (renamed["id"], renamed["name"], renamed["created_at"]) == (b["id"], "c", b["created_at"])
    assert store.call("test", sites.rename, str(uuid.uuid4()), "a") is None  # no such site, whatever the name
    assert create(store, "b")["name"] == "b"  # freed by the rename


def test_deleting_a_site_takes_its_inventory_not_its_scans(
        store: Store, make_scan: Callable[..., dict[str, Any]]) -> None:
    site, other = create(store, "lab"), create(store, "other")
    done = make_scan(site_id=site["id"], status="completed")
    for site_id in (site["id"], other["id"]):
        store.call("test", merge, scan_id=done["id"], site_id=site_id, at="2026-12-01T10:00:00Z",
                   found=[{"ip": "198.18.0.5", "ports": [{"port": 22, "protocol": "tcp", "state": "open"}]}],
                   covered=Covered(((0xC6120000, 0xC61200FF),), frozenset({22})))

    def rows(table: str) -> int:
        return store.call("test", lambda db: next(db.query(f"SELECT count(*) AS n FROM {table}"))["n"])

    counts = {t: rows(t) for t in ("inventory", "inventory_ports", "inventory_addresses", "changes")}
    assert counts == {"inventory": 2, "inventory_ports": 2, "inventory_addresses": 2, "changes": 2}
    assert store.call("test", sites.delete, site["id"]) is True
    assert {t: rows(t) for t in counts} == {t: 1 for t in counts}  # the other site's
    assert store.get_scan(done["id"])["site_id"] == site["id"]
    assert store.call("test", sites.delete, site["id"]) is False


@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_site_with_an_active_scan_is_not_deleted(
        store: Store, make_scan: Callable[..., dict[str, Any]], status: str) -> None:
    site = create(store, "busy")
    active = make_scan(site_id=site["id"], status=status)
    with pytest.raises(sites.SiteBusy, match=active["id"]):
        store.call("test", sites.delete, site["id"])
    assert store.call("test", sites.get, site["id"]) == site
    store.update_scan(active["id"], status="cancelled")
    assert store.call("test", sites.delete, site["id"]) is True


def test_a_scan_may_name_only_a_site_that_exists(store: Store) -> None:
    site = create(store, "here")
    scan = {"id": str(uuid.uuid4()), "target": "198.18.0.1", "profile": "quick"}
    assert store.call("test", sites.create_scan, scan | {"site_id": site["id"]})["site_id"] == site["id"]
    assert store.call("test", sites.create_scan, scan | {"id": str(uuid.uuid4())})["site_id"] is None
    missing = str(uuid.uuid4())
    with pytest.raises(sites.UnknownSite):
        store.call("test", sites.create_scan, scan | {"id": str(uuid.uuid4()), "site_id": missing})
