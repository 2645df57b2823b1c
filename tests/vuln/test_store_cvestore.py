"""CveStore on a real SQLite file: candidates by vendor and product, re-import in place, one
transaction across files (a refused file keeps nothing and leaves what was there), the tracker's
lookup, status, and calls from several threads at once."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from netscand.vuln.errors import CveStoreError, ImportRefused
from netscand.vuln.records import SourceStatus, TrackerEntry
from netscand.vuln.store import CveStore, ImportReport
from tests.vuln.nvd_json import cve, feed, tracker, write

BIND = "cpe:2.3:a:isc:bind:*:*:*:*:*:*:*:*"
DEBIAN = "cpe:2.3:o:debian:debian_linux:12.0:*:*:*:*:*:*:*"


@pytest.fixture
def store(tmp_path: Path) -> CveStore:
    return CveStore(tmp_path / "cve.db")


def _ids(store: CveStore, vendor: str, product: str) -> list[str]:
    return [r.id for r in store.candidates(vendor, product)]


def test_candidates_are_the_records_naming_vendor_and_product_in_any_node(store: CveStore, tmp_path: Path) -> None:
    platform = cve("CVE-2024-0003", configurations=[{"operator": "AND", "nodes": [
        {"cpeMatch": [{"vulnerable": True, "criteria": BIND}]},
        {"cpeMatch": [{"vulnerable": False, "criteria": DEBIAN}]}]}])
    escaped = cve("CVE-2024-0004", criteria="cpe:2.3:a:nodejs:node\\.js:*:*:*:*:*:*:*:*")
    report = store.import_nvd([write(tmp_path / "a.json", feed(cve(), cve("CVE-2024-0002", criteria=BIND),
                                                                platform, escaped))])
    assert report == ImportReport("nvd", files=1, records=4, written=4, total=4)
    assert _ids(store, "openbsd", "openssh") == ["CVE-2024-6387"]
    assert _ids(store, "ISC", "BIND") == ["CVE-2024-0002", "CVE-2024-0003"]  # CPE names ignore case
    assert _ids(store, "debian", "debian_linux") == ["CVE-2024-0003"]
    assert _ids(store, "nodejs", "node.js") == ["CVE-2024-0004"]  # unescaped, as cpe.parse reads it
    assert _ids(store, "openbsd", "openbsd") == []
    assert store.candidates("openbsd", "openssh")[0] == store.record("CVE-2024-6387")


def test_a_rejected_record_is_kept_but_never_a_candidate(store: CveStore, tmp_path: Path) -> None:
    store.import_nvd([write(tmp_path / "a.json", feed(cve()))])
    store.import_nvd([write(tmp_path / "b.json", feed(cve(modified="2024-10-01T00:00:00.000", vulnStatus="Rejected")))])
    assert _ids(store, "openbsd", "openssh") == []
    record = store.record("CVE-2024-6387")
    assert record is not None and record.status == "Rejected"
    assert store.status().sources[0].records == 1


def test_a_reimport_updates_records_in_place_and_their_index(store: CveStore, tmp_path: Path) -> None:
    store.import_nvd([write(tmp_path / "a.json", feed(cve(), cve("CVE-2024-0002")))])
    newer = cve(modified="2024-10-01T00:00:00.000", criteria=BIND,
                descriptions=[{"lang": "en", "value": "Now about BIND."}])
    report = store.import_nvd([write(tmp_path / "b.json", {"cve": newer})])
    assert (report.written, report.total) == (1, 2)
    record = store.record("CVE-2024-6387")
    assert record is not None and record.summary == "Now about BIND." and record.modified == "2024-10-01T00:00:00.000"
    assert _ids(store, "openbsd", "openssh") == ["CVE-2024-0002"]  # its old criterion is gone
    assert _ids(store, "isc", "bind") == ["CVE-2024-6387"]


def test_a_record_older_than_the_stored_one_is_left_out(store: CveStore, tmp_path: Path) -> None:
    """A yearly feed imported after the modified feed must not bring back yesterday's text."""
    modified = write(tmp_path / "modified.json", feed(cve(modified="2024-10-01T00:00:00.000", summary="x",
                                                          descriptions=[{"lang": "en", "value": "newer"}])))
    yearly = write(tmp_path / "2024.json", feed(cve(), cve("CVE-2024-0002")))
    report = store.import_nvd([modified, yearly])
    assert (report.records, report.written, report.total) == (3, 2, 2)
    record = store.record("CVE-2024-6387")
    assert record is not None and record.summary == "newer"


def test_an_id_twice_in_one_file_is_its_last_copy_with_only_its_products(store: CveStore, tmp_path: Path) -> None:
    report = store.import_nvd([write(tmp_path / "a.json", feed(cve(), cve(criteria=BIND)))])
    assert (report.records, report.written, report.total) == (2, 1, 1)
    assert _ids(store, "isc", "bind") == ["CVE-2024-6387"]
    assert _ids(store, "openbsd", "openssh") == []  # the first copy's criterion is not kept


def test_a_time_with_a_zone_is_stored_in_utc(store: CveStore, tmp_path: Path) -> None:
    store.import_nvd([write(tmp_path / "a.json", feed(cve(modified="2024-10-01T02:00:00.000+02:00")))])
    record = store.record("CVE-2024-6387")
    assert record is not None and record.modified == "2024-10-01T00:00:00.000"


def test_an_import_leaves_the_wal_empty_while_another_connection_is_open(store: CveStore, tmp_path: Path) -> None:
    """The last connection to close removes the WAL; while another stays open (a daemon's), SQLite
    keeps the WAL file at its largest unless it is truncated."""
    other = sqlite3.connect(store.path)
    try:
        other.execute("SELECT COUNT(*) FROM cves").fetchone()
        store.import_nvd([write(tmp_path / "a.json", feed(*[cve(f"CVE-2024-{n:04d}") for n in range(1, 500)]))])
        assert Path(f"{store.path}-wal").stat().st_size == 0
        store.import_tracker(write(tmp_path / "t.json", tracker(("openssh", "CVE-2024-0001", "bookworm", "open", None))))
        assert Path(f"{store.path}-wal").stat().st_size == 0
    finally:
        other.close()


def test_a_refused_file_keeps_nothing_of_its_import_and_the_earlier_data_stays(store: CveStore, tmp_path: Path) -> None:
    store.import_nvd([write(tmp_path / "first.json", feed(cve()))])
    before = store.status()
    good = write(tmp_path / "good.json", feed(cve("CVE-2024-0002"), cve(modified="2024-12-01T00:00:00.000",
                                                                         criteria=BIND)))
    bad = write(tmp_path / "bad.json.gz", feed(cve("CVE-2024-0003")), gzipped=True)
    bad.write_bytes(bad.read_bytes()[:-20])
    with pytest.raises(ImportRefused, match="bad.json.gz: truncated gzip file"):
        store.import_nvd([good, bad])
    assert store.record("CVE-2024-0002") is None
    assert _ids(store, "openbsd", "openssh") == ["CVE-2024-6387"] and _ids(store, "isc", "bind") == []
    assert store.status().sources == before.sources


def test_the_tracker_says_per_release_what_fixed_a_cve(store: CveStore, tmp_path: Path) -> None:
    report = store.import_tracker(write(tmp_path / "t.json", tracker(
        ("openssh", "CVE-2024-6387", "bookworm", "resolved", "1:9.2p1-2+deb12u3"),
        ("openssh", "CVE-2024-6387", "sid", "resolved", "1:9.7p1-7"),
        ("openssh", "CVE-2023-51767", "bookworm", "open", None))))
    assert report == ImportReport("debian-tracker", files=1, records=2, written=2, total=2)
    assert store.fixed_in("openssh", "CVE-2024-6387") == {
        "bookworm": TrackerEntry("resolved", "1:9.2p1-2+deb12u3"), "sid": TrackerEntry("resolved", "1:9.7p1-7")}
    assert store.fixed_in("openssh", "CVE-2023-51767") == {"bookworm": TrackerEntry("open", None)}
    assert store.fixed_in("openssh", "CVE-2099-0001") == {} and store.fixed_in("nginx", "CVE-2024-6387") == {}


def test_a_tracker_import_replaces_the_last_and_a_refused_one_keeps_it(store: CveStore, tmp_path: Path) -> None:
    store.import_tracker(write(tmp_path / "t1.json", tracker(("openssh", "CVE-2024-6387", "bookworm", "open", None))))
    store.import_tracker(write(tmp_path / "t2.json", tracker(("nginx", "CVE-2023-44487", "bookworm", "resolved", "1.22.1-9"))))
    assert store.fixed_in("openssh", "CVE-2024-6387") == {}
    with pytest.raises(ImportRefused, match=r"t3.json: nginx: Expected an object, got an array$"):
        store.import_tracker(write(tmp_path / "t3.json", {"nginx": []}))
    assert store.fixed_in("nginx", "CVE-2023-44487") == {"bookworm": TrackerEntry("resolved", "1.22.1-9")}


def test_status_says_what_is_loaded_and_how_old(store: CveStore, tmp_path: Path) -> None:
    empty = store.status()
    assert (empty.loaded, empty.sources, empty.updated_at, empty.age_seconds) == (False, (), None, None)
    store.import_tracker(write(tmp_path / "t.json", tracker(("openssh", "CVE-2024-6387", "bookworm", "open", None))))
    assert not store.status().loaded  # the tracker alone matches nothing
    store.import_nvd([write(tmp_path / "a.json", feed(cve(), cve("CVE-2024-0002", modified="2024-11-11T11:11:11.111")))])
    status = store.status()
    assert status.loaded and status.age_seconds is not None and 0 <= status.age_seconds < 60
    tracker_source, nvd_source = status.sources
    assert nvd_source == SourceStatus("nvd", 2, "2024-11-11T11:11:11.111", nvd_source.imported_at)
    assert (tracker_source.name, tracker_source.records) == ("debian-tracker", 1)
    assert tracker_source.newest == tracker_source.imported_at
    assert status.updated_at == max(nvd_source.imported_at or "", tracker_source.imported_at or "")


def test_the_database_is_a_wal_file_readable_while_an_import_writes(store: CveStore, tmp_path: Path) -> None:
    store.import_nvd([write(tmp_path / "a.json", feed(cve()))])
    big = write(tmp_path / "big.json", feed(*(cve(f"CVE-2024-{n:05}") for n in range(3000))))
    seen: list[int] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.append(len(store.candidates("openbsd", "openssh")))

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        store.import_nvd([big])
    finally:
        done.set()
        for reader in readers:
            reader.join()
    assert set(seen) <= {1, 3001} and len(_ids(store, "openbsd", "openssh")) == 3001
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_database_that_cannot_be_opened_is_one_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(CveStoreError, match=r"cannot prepare .*/missing/cve.db: unable to open database file"):
        CveStore(tmp_path / "missing" / "cve.db")
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    with pytest.raises(CveStoreError, match="junk.db: file is not a database"):
        CveStore(tmp_path / "junk.db")
