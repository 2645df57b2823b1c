"""`netscand cve sync` against a real HTTP server on loopback (never the internet): what it
fetches, in which order, with which header, and a failed or refused file leaving the data as it was.
The same server stands in for the NVD's REST API 2.0 (a synced database and a key: only changes)."""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from netscand.vuln import sync as cve_sync
from netscand.vuln.errors import ImportRefused, SyncError
from netscand.vuln.records import TrackerEntry
from netscand.vuln.store import CveStore
from tests.vuln.nvd_json import cve, feed, tracker

TRACKER = tracker(("openssh", "CVE-2024-6387", "bookworm", "resolved", "1:9.2p1-2+deb12u3"))


@dataclass
class Mirror:
    """What the server serves (path -> body, or an HTTP status), and the requests it had."""

    url: str
    files: dict[str, bytes | int] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, apiKey header)
    # The API's answer to a query (parameter -> value), as (status, body, Location header).
    api: Callable[[dict[str, str]], tuple[int, Any, str | None]] = lambda query: (200, feed(), None)

    def serve(self, path: str, data: Any) -> None:
        self.files[path] = gzip.compress(json.dumps(data).encode()) if path.endswith(".gz") else json.dumps(data).encode()


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    served = Mirror("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests.append((self.path, self.headers.get("apiKey")))
            if self.path.startswith("/rest/json/cves/2.0?"):
                self._answer(*served.api({k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}))
                return
            body = served.files.get(self.path)
            if body is None and self.path.startswith("/feeds/nvdcve-2.0-"):
                body = gzip.compress(json.dumps(feed()).encode())  # a year with nothing in it
            if body is None or isinstance(body, int):
                self.send_error(body or 404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _answer(self, status: int, data: Any, location: str | None) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    served.serve("/tracker/data/json", TRACKER)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served
    server.shutdown()
    server.server_close()


NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _sync(store: CveStore, mirror: Mirror, api_key: str | None = None) -> list[Any]:
    return cve_sync.sync(store, f"{mirror.url}/feeds/", f"{mirror.url}/tracker/data/json", api_key, this_year=2004,
                         api_url=f"{mirror.url}/rest/json/cves/2.0", now=NOW)


def test_sync_fetches_every_year_then_the_latest_feeds_and_the_tracker(tmp_path: Path, mirror: Mirror) -> None:
    mirror.serve("/feeds/nvdcve-2.0-2004.json.gz", feed(cve("CVE-2004-0001"), cve()))
    mirror.serve("/feeds/nvdcve-2.0-modified.json.gz", feed(cve(modified="2024-12-01T00:00:00.000", summary="x",
                                                                descriptions=[{"lang": "en", "value": "newest"}])))
    store = CveStore(tmp_path / "cve.db")
    nvd, debian = _sync(store, mirror, api_key="0123-key")
    assert [path for path, _ in mirror.requests] == [
        "/feeds/nvdcve-2.0-2002.json.gz", "/feeds/nvdcve-2.0-2003.json.gz", "/feeds/nvdcve-2.0-2004.json.gz",
        "/feeds/nvdcve-2.0-modified.json.gz", "/feeds/nvdcve-2.0-recent.json.gz", "/tracker/data/json"]
    assert {key for _, key in mirror.requests} == {None}  # the feeds take no key: it goes to the API only
    assert (nvd.files, nvd.records, nvd.total, debian.records) == (5, 3, 2, 1)
    record = store.record("CVE-2024-6387")
    assert record is not None and record.summary == "newest"
    assert store.fixed_in("openssh", "CVE-2024-6387") == {"bookworm": TrackerEntry("resolved", "1:9.2p1-2+deb12u3")}


def test_without_a_key_no_apikey_header_is_sent(tmp_path: Path, mirror: Mirror) -> None:
    _sync(CveStore(tmp_path / "cve.db"), mirror)
    assert {key for _, key in mirror.requests} == {None}


@pytest.fixture
def loaded(tmp_path: Path, mirror: Mirror) -> CveStore:
    store = CveStore(tmp_path / "cve.db")
    mirror.serve("/feeds/nvdcve-2.0-2003.json.gz", feed(cve("CVE-2003-0001")))
    _sync(store, mirror)
    mirror.files.clear()
    mirror.serve("/tracker/data/json", {})
    mirror.serve("/feeds/nvdcve-2.0-2004.json.gz", feed(cve("CVE-2004-0001")))
    return store


def _unchanged(store: CveStore) -> bool:
    return (store.record("CVE-2003-0001") is not None and store.record("CVE-2004-0001") is None
            and store.fixed_in("openssh", "CVE-2024-6387") != {})


def test_a_file_that_cannot_be_fetched_changes_nothing(loaded: CveStore, mirror: Mirror) -> None:
    mirror.files["/feeds/nvdcve-2.0-recent.json.gz"] = 503
    with pytest.raises(SyncError, match=rf"^cannot fetch {mirror.url}/feeds/nvdcve-2.0-recent.json.gz: "
                                        "HTTP 503 Service Unavailable$"):
        _sync(loaded, mirror)
    assert _unchanged(loaded)


def test_a_refused_file_is_named_by_its_url_and_changes_nothing(loaded: CveStore, mirror: Mirror) -> None:
    mirror.files["/feeds/nvdcve-2.0-modified.json.gz"] = b"<html>maintenance</html>"
    with pytest.raises(ImportRefused) as refused:
        _sync(loaded, mirror)
    assert refused.value.file == f"{mirror.url}/feeds/nvdcve-2.0-modified.json.gz"
    assert refused.value.reason.startswith("not JSON")
    assert _unchanged(loaded)


def test_a_download_beyond_the_bound_stops(tmp_path: Path, mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cve_sync, "MAX_DOWNLOAD", 10)
    with pytest.raises(SyncError, match=r"nvdcve-2.0-2002.json.gz: larger than 0 MB$"):
        _sync(CveStore(tmp_path / "cve.db"), mirror)


def test_a_download_that_takes_too_long_stops(tmp_path: Path, mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cve_sync, "MAX_SECONDS", -1)  # a trickling server, without the wait
    with pytest.raises(SyncError, match=r"nvdcve-2.0-2002.json.gz: not done after -1 s$"):
        _sync(CveStore(tmp_path / "cve.db"), mirror)


def test_a_server_that_is_not_there_is_one_error(tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(SyncError, match=rf"^cannot fetch http://127.0.0.1:{port}/nvdcve-2.0-2002.json.gz: .*refused"):
        cve_sync.sync(CveStore(tmp_path / "cve.db"), f"http://127.0.0.1:{port}", "http://127.0.0.1:1/t")


def test_the_cli_syncs_from_the_urls_it_is_given(tmp_path: Path, mirror: Mirror) -> None:
    mirror.serve("/feeds/nvdcve-2.0-2024.json.gz", feed(cve()))
    db = tmp_path / "cve.db"
    done = subprocess.run([sys.executable, "-m", "netscand", "cve", "sync", "--db", str(db), "--source",
                           f"{mirror.url}/feeds", "--tracker", f"{mirror.url}/tracker/data/json"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("nvd: 1 records read from")
    assert CveStore(db).record("CVE-2024-6387") is not None


@pytest.fixture
def synced(tmp_path: Path, mirror: Mirror) -> CveStore:
    """A database a sync has filled from the feeds: its newest record modified 2024-09-01."""
    store = CveStore(tmp_path / "cve.db")
    mirror.serve("/feeds/nvdcve-2.0-2003.json.gz", feed(cve("CVE-2003-0001")))
    _sync(store, mirror, api_key="0123-key")
    mirror.requests.clear()
    return store


def test_with_a_key_a_synced_database_asks_the_api_for_changes_only(synced: CveStore, mirror: Mirror) -> None:
    pages = {"2024-09-01T00:00:00.000+00:00": feed(cve("CVE-2024-0001", modified="2024-10-01T00:00:00.000")),
             "2024-12-30T00:00:00.000+00:00": feed(cve("CVE-2003-0001", modified="2025-01-02T00:00:00.000",
                                                       summary="changed"))}
    mirror.api = lambda query: (200, pages[query["lastModStartDate"]], None)
    nvd, _ = _sync(synced, mirror, api_key="0123-key")
    api = [parse_qs(urlsplit(path).query) for path, _ in mirror.requests if path.startswith("/rest/")]
    assert [(q["lastModStartDate"], q["lastModEndDate"], q["resultsPerPage"], q["startIndex"]) for q in api] == [
        (["2024-09-01T00:00:00.000+00:00"], ["2024-12-30T00:00:00.000+00:00"], ["2000"], ["0"]),
        (["2024-12-30T00:00:00.000+00:00"], ["2025-03-01T12:00:00.000+00:00"], ["2000"], ["0"])]
    assert mirror.requests[-1] == ("/tracker/data/json", None)  # no feed fetched, no key to Debian
    assert {key for path, key in mirror.requests if path.startswith("/rest/")} == {"0123-key"}
    assert (nvd.files, nvd.records, nvd.written) == (2, 2, 2)
    changed = synced.record("CVE-2003-0001")
    assert changed is not None and changed.modified == "2025-01-02T00:00:00.000"


def test_api_pages_are_followed_by_start_index(synced: CveStore, mirror: Mirror,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cve_sync, "PAGE_SIZE", 2)
    monkeypatch.setattr(cve_sync, "WINDOW", NOW - datetime(2024, 9, 1, tzinfo=UTC))
    records = [cve(f"CVE-2025-000{n}", modified="2025-01-01T00:00:00.000") for n in range(1, 6)]

    def page(query: dict[str, str]) -> tuple[int, Any, None]:
        start = int(query["startIndex"])
        return 200, {**feed(*records[start:start + 2]), "totalResults": 5, "startIndex": start}, None

    mirror.api = page
    nvd, _ = _sync(synced, mirror, api_key="0123-key")
    assert [parse_qs(urlsplit(p).query)["startIndex"] for p, _ in mirror.requests if p.startswith("/rest/")] == [
        ["0"], ["2"], ["4"]]
    assert (nvd.files, nvd.records, nvd.total) == (3, 5, 6)


def test_an_api_page_that_never_ends_is_refused(synced: CveStore, mirror: Mirror) -> None:
    mirror.api = lambda query: (200, {**feed(), "totalResults": 10}, None)
    with pytest.raises(SyncError, match="an empty page of 10 results$"):
        _sync(synced, mirror, api_key="0123-key")


def test_the_key_is_not_sent_to_a_redirect_to_another_host(synced: CveStore, mirror: Mirror) -> None:
    elsewhere = mirror.url.replace("127.0.0.1", "localhost") + "/elsewhere"
    mirror.api = lambda query: (302, {}, elsewhere)
    with pytest.raises(SyncError, match="redirected to localhost, where the API key is not sent$"):
        _sync(synced, mirror, api_key="0123-key")
    assert [path for path, _ in mirror.requests if not path.startswith("/rest/")] == []


def test_without_a_key_a_synced_database_fetches_the_feeds_again(synced: CveStore, mirror: Mirror) -> None:
    _sync(synced, mirror)
    assert not any(path.startswith("/rest/") for path, _ in mirror.requests)
    assert "/feeds/nvdcve-2.0-modified.json.gz" in [path for path, _ in mirror.requests]
