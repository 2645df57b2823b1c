"""`netscand cve sync`: fetch the NVD's JSON 2.0 feed files and the Debian Security Tracker's
JSON into a temporary directory, then import them as `netscand cve import` would (the NVD files
in one transaction, the tracker in another), so a failed download changes nothing.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

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


def feed_names(this_year: int) -> list[str]:
    years = [str(year) for year in range(FIRST_YEAR, this_year + 1)]
    return [f"nvdcve-2.0-{name}.json.gz" for name in (*years, *LATEST_FEEDS)]


def sync(store: CveStore, feed_url: str, tracker_url: str, api_key: str | None = None,
         this_year: int | None = None) -> list[ImportReport]:
    """Fetch every feed file and the tracker, then import them; SyncError when a file can't be
    fetched, ImportRefused (naming its URL) when one can't be loaded."""
    names = feed_names(this_year or datetime.now(UTC).year)
    urls = [f"{feed_url.rstrip('/')}/{name}" for name in names] + [tracker_url]
    headers = {"apiKey": api_key} if api_key else {}
    with tempfile.TemporaryDirectory(prefix="netscand-cve-") as tmp:
        paths = [Path(tmp, name) for name in (*names, "debian-tracker.json")]
        with httpx.Client(headers=headers, timeout=TIMEOUT, follow_redirects=True) as client:
            for url, path in zip(urls, paths, strict=True):
                _download(client, url, path)
        with _named_by_url(dict(zip(map(str, paths), urls, strict=True))):
            return [store.import_nvd(paths[:-1]), store.import_tracker(paths[-1])]


def _download(client: httpx.Client, url: str, path: Path) -> None:
    deadline = time.monotonic() + MAX_SECONDS
    try:
        with client.stream("GET", url) as response, path.open("wb") as out:
            if response.status_code != 200:
                raise SyncError(f"cannot fetch {url}: HTTP {response.status_code} {response.reason_phrase}")
            for chunk in response.iter_bytes():
                if out.tell() + len(chunk) > MAX_DOWNLOAD:
                    raise SyncError(f"cannot fetch {url}: larger than {MAX_DOWNLOAD >> 20} MB")
                if time.monotonic() > deadline:
                    raise SyncError(f"cannot fetch {url}: not done after {MAX_SECONDS} s")
                out.write(chunk)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise SyncError(f"cannot fetch {url}: {exc or type(exc).__name__}") from None


@contextmanager
def _named_by_url(urls: dict[str, str]) -> Iterator[None]:
    """A refused file is named by where it came from, not by its temporary copy."""
    try:
        yield
    except ImportRefused as exc:
        raise ImportRefused(urls.get(exc.file, exc.file), exc.record, exc.reason) from None
