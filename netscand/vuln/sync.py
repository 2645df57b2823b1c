"""`netscand cve sync`: fetch CVE data into a temporary directory, then import it as `netscand
cve import` would (the NVD files in one transaction, the tracker in another), so a failed
download changes nothing.

Without an NVD API key, or into a database with no NVD record yet, the NVD's JSON 2.0 feed files
are fetched (every year, then the modified and recent feeds). With a key and records already
stored, only the records modified since the newest stored one are asked of the NVD's REST API
2.0 (the feed files take no key; the API is where one buys a higher rate). The key goes to the
API's host alone: never to the feeds, the Debian tracker, or a redirect to another host.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import msgspec

from netscand.vuln.errors import ImportRefused, SyncError
from netscand.vuln.store import CveStore, ImportReport

FIRST_YEAR = 2002  # the NVD's first yearly feed (older CVEs are filed in it)
# After the yearly files, so their records, the newest, are the ones kept.
LATEST_FEEDS = ("modified", "recent")
# The largest yearly feed is about 30 MB compressed and the tracker's JSON about 60 MB: far
# beyond that a server is sending something else, and the download stops.
MAX_DOWNLOAD = 1 << 30
TIMEOUT = httpx.Timeout(60.0, connect=15.0)  # per read: a server may also trickle, hence
MAX_SECONDS = 1800  # a whole file's bound (30 MB in half an hour is a very slow line)
# The REST API's limits: lastModStartDate..lastModEndDate spans at most 120 days, a page at most
# 2000 records. The NVD holds ~300,000 records: a window claiming more is refused, not paged through.
WINDOW = timedelta(days=120)
PAGE_SIZE = 2000
API_URL = "https://services.nvd.nist.gov/rest/json/cves/2.0"
MAX_PAGES = 500  # a million records: a server paging past that is refused, not followed
MAX_REDIRECTS = 5
# Only gzip: the importer gunzips a file itself, so the bytes on the wire are the bytes bounded.
_HEADERS = {"Accept-Encoding": "gzip"}


class _Page(msgspec.Struct, rename="camel"):
    """What paging needs of an API response (its records are read by the importer)."""

    total_results: int
    results_per_page: int


def feed_names(this_year: int) -> list[str]:
    years = [str(year) for year in range(FIRST_YEAR, this_year + 1)]
    return [f"nvdcve-2.0-{name}.json.gz" for name in (*years, *LATEST_FEEDS)]


def sync(store: CveStore, feed_url: str, tracker_url: str, api_key: str | None = None,
         this_year: int | None = None, api_url: str = API_URL,
         now: datetime | None = None) -> list[ImportReport]:
    """Fetch the NVD data (feeds, or with `api_key` the API's changes since the newest stored
    record) and the tracker, then import them; SyncError when a file can't be fetched,
    ImportRefused (naming its URL) when one can't be loaded."""
    now = now or datetime.now(UTC)
    newest = store.synced_newest() if api_key else None
    with tempfile.TemporaryDirectory(prefix="netscand-cve-") as tmp, \
            httpx.Client(headers=_HEADERS, timeout=TIMEOUT, follow_redirects=True) as client:
        if newest is not None and api_key:
            fetched = _changes(client, api_url, api_key, _utc(newest), now, Path(tmp))
        else:
            fetched = _feeds(client, feed_url, this_year or now.year, Path(tmp))
        tracker = Path(tmp, "debian-tracker.json")
        _download(client, tracker_url, tracker)
        with _named_by_url({**{str(path): url for url, path in fetched}, str(tracker): tracker_url}):
            nvd = store.import_nvd([path for _, path in fetched], full_feeds=newest is None)
            return [nvd, store.import_tracker(tracker)]


def _feeds(client: httpx.Client, feed_url: str, this_year: int, tmp: Path) -> list[tuple[str, Path]]:
    fetched = [(f"{feed_url.rstrip('/')}/{name}", tmp / name) for name in feed_names(this_year)]
    for url, path in fetched:
        _download(client, url, path)
    return fetched


def _changes(client: httpx.Client, api_url: str, api_key: str, since: datetime, now: datetime,
             tmp: Path) -> list[tuple[str, Path]]:
    """Every page of records modified between `since` and `now`, a window of WINDOW at a time."""
    fetched: list[tuple[str, Path]] = []
    start = since
    while start < now:
        end = min(start + WINDOW, now)
        fetched += _window(client, api_url, api_key, start, end, tmp, len(fetched))
        start = end
    return fetched


def _window(client: httpx.Client, api_url: str, api_key: str, start: datetime, end: datetime,
            tmp: Path, numbered: int) -> list[tuple[str, Path]]:
    pages: list[tuple[str, Path]] = []
    index, total = 0, 1
    while index < total:
        if numbered + len(pages) >= MAX_PAGES:
            raise SyncError(f"cannot fetch {api_url}: more than {MAX_PAGES} pages of changes")
        params = {"lastModStartDate": _api_time(start), "lastModEndDate": _api_time(end),
                  "resultsPerPage": str(PAGE_SIZE), "startIndex": str(index)}
        url = str(httpx.URL(api_url, params=params))
        path = tmp / f"nvd-api-{numbered + len(pages)}.json"
        _download(client, url, path, api_key)
        page = _page(url, path)
        if page.results_per_page <= 0 < page.total_results - index:
            raise SyncError(f"cannot fetch {url}: an empty page of {page.total_results} results")
        pages.append((url, path))
        index, total = index + page.results_per_page, page.total_results
    return pages


def _page(url: str, path: Path) -> _Page:
    try:
        return msgspec.json.decode(path.read_bytes(), type=_Page)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ImportRefused(url, None, f"not an NVD API response: {exc}") from None


def _api_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+00:00"


def _utc(stored: str) -> datetime:
    """A stored `modified` time: NVD's times are UTC without a zone."""
    moment = datetime.fromisoformat(stored)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _download(client: httpx.Client, url: str, path: Path, api_key: str | None = None) -> None:
    deadline = time.monotonic() + MAX_SECONDS
    try:
        with _get(client, url, api_key) as response, path.open("wb") as out:
            if response.status_code != 200:
                raise SyncError(f"cannot fetch {url}: HTTP {response.status_code} {response.reason_phrase}")
            for chunk in response.iter_raw():  # bytes on the wire: a compressed bomb stops early
                if out.tell() + len(chunk) > MAX_DOWNLOAD:
                    raise SyncError(f"cannot fetch {url}: larger than {MAX_DOWNLOAD >> 20} MB")
                if time.monotonic() > deadline:
                    raise SyncError(f"cannot fetch {url}: not done after {MAX_SECONDS} s")
                out.write(chunk)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise SyncError(f"cannot fetch {url}: {exc or type(exc).__name__}") from None


@contextmanager
def _get(client: httpx.Client, url: str, api_key: str | None) -> Iterator[httpx.Response]:
    """GET `url`; with a key, the apiKey header goes with it, and redirects are followed only
    within its host (httpx would carry a custom header to any host a redirect names)."""
    if api_key is None:
        with client.stream("GET", url) as response:
            yield response
        return
    for _ in range(MAX_REDIRECTS + 1):
        with client.stream("GET", url, headers={"apiKey": api_key}, follow_redirects=False) as response:
            target = response.next_request.url if response.is_redirect and response.next_request else None
            if target is None:
                yield response
                return
        if (target.scheme, target.host, target.port) != (response.url.scheme, response.url.host, response.url.port):
            raise SyncError(f"cannot fetch {url}: redirected to {target.host}, where the API key is not sent")
        url = str(target)
    raise SyncError(f"cannot fetch {url}: more than {MAX_REDIRECTS} redirects")


@contextmanager
def _named_by_url(urls: dict[str, str]) -> Iterator[None]:
    """A refused file is named by where it came from, not by its temporary copy."""
    try:
        yield
    except ImportRefused as exc:
        raise ImportRefused(urls.get(exc.file, exc.file), exc.record, exc.reason) from None
