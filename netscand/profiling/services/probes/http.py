"""HTTP: a plain GET /, then the Server header and the page title. Over TLS it reports "https"."""

from __future__ import annotations

import html
import re

from netscand.profiling.headers import head as headers_of
from netscand.profiling.services import upnp
from netscand.profiling.services.base import ServiceInfo, cpe, os_hint, printable, token

name = "http"
ports = frozenset({80, 443, 8000, 8008, 8080, 8081, 8443, 8888})
tls = False
# HTTP/1.0 without Host: every server answers it and then closes, so the read ends at EOF.
payload: bytes | None = b"GET / HTTP/1.0\r\nUser-Agent: netscand\r\nAccept: */*\r\n\r\n"

_STATUS = re.compile(rb"HTTP/(\d\.\d) (\d{3})")
_HEAD_MAX = 16 * 1024
_BODY_MAX = 64 * 1024  # where a title is looked for: the detector reads no more than this anyway
_TITLE_MAX = 2048
# Server header product (lowercased) -> (product, CPE vendor, CPE product). NVD files nginx under
# f5:nginx since F5 bought it (older entries used nginx:nginx, now deprecated).
_PRODUCTS = {
    "nginx": ("nginx", "f5", "nginx"),
    "apache": ("Apache httpd", "apache", "http_server"),
    "microsoft-iis": ("Microsoft IIS", "microsoft", "internet_information_services"),
    "lighttpd": ("lighttpd", "lighttpd", "lighttpd"),
    "openresty": ("OpenResty", "openresty", "openresty"),
    "caddy": ("Caddy", "caddyserver", "caddy"),
}


def parse(data: bytes) -> ServiceInfo | None:
    status = _STATUS.match(data)
    if not status:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    _, headers = headers_of(head, _HEAD_MAX)
    extra: dict[str, object] = {"status": int(status.group(2))}
    if b"plain HTTP request was sent to HTTPS port" in body:
        extra["tls_required"] = True  # nginx's answer on a TLS port: the detector retries in TLS
    title = _title(body[:_BODY_MAX])
    if title is not None:
        text = html.unescape(title.decode("utf-8", "replace"))
        extra["title"] = " ".join(text.split())[:128]
    server = headers.get("server")
    product = version = name_cpe = None
    if server:
        extra["server"] = server[:128]
        word, _, rest = server.partition("/")
        known = _PRODUCTS.get(word.strip().lower())
        version = token(rest)
        product = known[0] if known else token(word)
        if known:
            name_cpe = cpe(known[1], known[2], version)
        upnp_product = upnp.server_product(server)
        if upnp_product:  # a UPnP device's server: "<OS>/<ver> UPnP/1.1 <product>/<ver>"
            product, version, name_cpe = upnp_product
        extra.update(os_hint(server))
    return ServiceInfo("http", product, version, name_cpe, printable(head), extra)


def _title(body: bytes) -> bytes | None:
    """What the first `<title ...>` element holds, if it closes within _TITLE_MAX bytes.

    The regex `<title[^>]*>(.{0,2048}?)</title` scans from every "<title" to the next ">", so a
    page of many "<title" and no ">" costs time quadratic in its size; here each find starts
    where the one before it stopped, so the work is linear in the page, whatever it holds.
    """
    lower = body.lower()
    position = searched = 0  # no "</title" starts before `searched`
    while (start := lower.find(b"<title", position)) >= 0:
        close = lower.find(b">", start + 6)
        if close < 0:
            return None  # no ">" after this "<title", nor after any later one
        limit = close + 1 + _TITLE_MAX + len(b"</title")
        end = lower.find(b"</title", max(close + 1, searched), limit)
        if end >= 0:
            return body[close + 1 : end]
        # Every "<title" before `close` opens at the same ">" and would fail the same way.
        position, searched = close + 1, limit - len(b"</title") + 1
    return None
