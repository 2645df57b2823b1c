"""Exports: a scan's whole result as nmap XML, CSV or JSON Lines (GET .../result?format=),
streamed a page of devices at a time (scan/exports.py writes them).

Memory stays bounded by a page however large the result: each page is read from the store and
written to bytes on the store's reader threads (nothing slow on the event loop), and the next
is read only once the client has taken the last (the server's send waits on the socket). The
first page is read before answering, so a store that can't be read is a problem document
(503), not a cut stream; a failure later can only cut the stream, which the client sees as a
body that ends before its last chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from starlette.datastructures import QueryParams
from starlette.responses import StreamingResponse

from netscand.api.problems import Problem
from netscand.scan.errors import not_found
from netscand.scan.exports import (
    INVENTORY_COLUMNS,
    INVENTORY_PORT_COLUMNS,
    Export,
    export,
)
from netscand.scan.formats import DEVICE_FORMATS, FORMATS, Format
from netscand.scan.orchestrator import Orchestrator
from netscand.store import Store, devices
from netscand.store.threads import StoreThreads

EXPORT_PAGE = 250  # devices read and written at a time
PAGING = ("page", "per_page")

Pages = Iterator[list[dict[str, Any]]]


def export_format(name: str, params: QueryParams) -> Format | None:
    """The export a query's `format` names; None for json. An export is the whole listing, so
    paging one is refused rather than ignored."""
    if name == "json":
        return None
    for paging in PAGING:
        if paging in params:
            raise Problem.invalid(paging, f"{paging} pages json; format {name} is the whole listing, "
                                          "streamed: leave page and per_page out")
    return FORMATS[name]


async def scan_export(orchestrator: Orchestrator, scan_id: str, viewer: str | None, fmt: Format) -> StreamingResponse:
    """The scan's whole result in `fmt`, streamed."""
    await orchestrator.status(scan_id, viewer)  # 404 for a scan this caller may not see
    scan = await orchestrator.persist.scan(scan_id)
    if scan is None:
        raise not_found(scan_id)  # deleted meanwhile
    pages = orchestrator.persist.result_pages(scan_id, EXPORT_PAGE)
    writer = export(fmt.name, scan, await orchestrator.persist.addresses(scan_id))
    return await stream(orchestrator.io, pages, writer, fmt, f"netscand-{scan_id}")


def device_pages(store: Store, filters: devices.Filters, size: int = EXPORT_PAGE) -> Pages:
    """The inventory's devices matching `filters`, a page at a time in the list's order: counted
    once, then each page read by the key of the last, a short hold of the store each."""
    plan = store.call("cannot export devices", devices.listing, filters, size)
    after: devices.Key | None = None
    while True:
        rows, after = store.call("cannot export devices", devices.page_after, plan, after, size)
        yield rows
        if len(rows) < size:
            return


async def stream(io: StoreThreads, pages: Pages, writer: Export, fmt: Format, name: str) -> StreamingResponse:
    """`pages` (a blocking iterator: each page is read on a reader thread) written by `writer`,
    as a download named `name`.<extension>. The head and first page are written before answering,
    so that a failure in either is a problem document, not a cut stream."""
    head, first = await io.read(_started, pages, writer)
    return StreamingResponse(
        _body(io, pages, writer, head, first), media_type=fmt.media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt.extension}"'})


async def _body(io: StoreThreads, pages: Pages, writer: Export, head: bytes, first: bytes | None
                ) -> AsyncIterator[bytes]:
    yield head
    chunk = first
    while chunk is not None:
        if chunk:
            yield chunk
        chunk = await io.read(_written, pages, writer)
    yield writer.tail()


def _started(pages: Pages, writer: Export) -> tuple[bytes, bytes | None]:
    return writer.head(), _written(pages, writer)


def _written(pages: Pages, writer: Export) -> bytes | None:
    """The next page as bytes, None after the last; on a reader thread."""
    page = next(pages, None)
    return None if page is None else writer.page(page)


DESCRIPTION = (
    " With `format` nmap-xml, csv or jsonl the answer is instead the whole result, streamed (no "
    "`page` or `per_page`: 422): nmap's XML output (`application/xml`), valid against the DTD nmap "
    "installs, which python-libnmap and ndiff read; CSV (`text/csv`), a header row then one row per "
    "port (a device without a listed port gets one row with empty port cells), CVE ids `;`-joined, "
    "a cell beginning with = + - @ tab or CR prefixed with `'` against CSV injection, control "
    "characters but tab, CR and LF replaced by U+FFFD; or JSON Lines "
    "(`application/x-ndjson`), one device per line as the JSON result has it, with `scan_id`. "
    "`Content-Disposition` names the file. A scan still running exports what it has found so far.")

DEVICES_DESCRIPTION = (
    f" With `format` {' or '.join(DEVICE_FORMATS)} the answer is instead every device matching the filters, "
    "streamed (no `page` or `per_page`: 422): CSV (`text/csv`), a header row then one row per open port (a "
    "device without one gets one row with empty port cells), with the columns "
    f"{', '.join([h for h, _ in INVENTORY_COLUMNS] + list(INVENTORY_PORT_COLUMNS))} and the result's guard "
    "against CSV injection; or JSON Lines (`application/x-ndjson`), one device per line as the list has it. "
    "`Content-Disposition` names the file `netscand-devices.csv` or `.jsonl`.")


def documented(response: dict[str, Any], formats: Iterable[str] = FORMATS) -> dict[str, Any]:
    """The OpenAPI response of a JSON listing, with its exports' media types beside its own."""
    exported = {FORMATS[f].media_type: {"schema": {"type": "string"}} for f in formats}
    disposition = {"Content-Disposition": {"schema": {"type": "string"}, "description":
                                           'With an export: `attachment; filename="…"`, its file name.'}}
    return {**response, "content": {**response["content"], **exported},
            "headers": {**response.get("headers", {}), **disposition}}
