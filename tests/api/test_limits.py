"""Bounds on request heads (netscand.api.protocol): a long URL is a 414, long headers a 431, a
head that never ends a 408; each a problem document, then the connection is closed."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

import httpx
import orjson

from netscand.api.protocol import HEAD_TIMEOUT_S, MAX_HEAD, MAX_URL
from tests.api.conftest import PROBLEM_KEYS, Api


def raw_unix(api: Api) -> httpx.Client:
    """A Unix socket client without the conformance hook: these answers come before routing."""
    return httpx.Client(base_url="http://netscand", transport=httpx.HTTPTransport(uds=str(api.socket_path)))


def assert_refused(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["connection"] == "close"
    body = r.json()
    assert PROBLEM_KEYS <= body.keys() and body["status"] == status and body["type"] == "about:blank"


def test_a_url_over_the_limit_is_a_414(api: Api) -> None:
    with raw_unix(api) as client:
        assert client.get("/api/v1/scans", params={"x": "a" * (MAX_URL - 100)}).status_code == 422
        assert_refused(client.get("/api/v1/scans", params={"x": "a" * MAX_URL}), 414)
        assert client.get("/healthz").status_code == 200  # a new connection is served


def test_headers_over_the_limit_are_a_431_on_both_listeners(api: Api) -> None:
    token = api.token("read")
    big = {f"X-Filler-{i}": "f" * 1000 for i in range(MAX_HEAD // 1000 + 1)}
    fits = {f"X-Filler-{i}": "f" * 1000 for i in range(MAX_HEAD // 1000 - 4)}
    with raw_unix(api) as unix, httpx.Client(base_url=api.base_url, verify=api.tls,
                                             headers={"Authorization": f"Bearer {token}"}) as tcp:
        for client in (unix, tcp):
            assert client.get("/api/v1/scans", headers=fits).status_code == 200
            assert_refused(client.get("/api/v1/scans", headers=big), 431)
            # One header alone, too: the parser holds a header until it is complete.
            assert_refused(client.get("/api/v1/scans", headers={"X-One": "o" * MAX_HEAD}), 431)


def test_pipelined_requests_are_each_answered(api: Api) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(api.socket_path))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: netscand\r\n\r\n" * 20)
        s.settimeout(5)
        answers = b""
        while answers.count(b"HTTP/1.1 200 OK") < 20:
            chunk = s.recv(65536)
            assert chunk, answers
            answers += chunk


def test_a_head_that_does_not_end_is_a_408_and_a_silent_connection_is_closed(api: Api) -> None:
    url = urlsplit(api.base_url)
    assert url.hostname and url.port
    answers: dict[str, bytes] = {}

    def half_a_head() -> None:
        with socket.create_connection((url.hostname, url.port)) as raw, \
                api.tls.wrap_socket(raw, server_hostname=url.hostname) as s:
            s.sendall(b"GET /api/v1/scans HTTP/1.1\r\nHost: netscand\r\n")
            answers["half"] = _read_until_closed(s)

    def nothing() -> None:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(api.socket_path))
            answers["silent"] = _read_until_closed(s)

    began = time.monotonic()
    threads = [threading.Thread(target=f) for f in (half_a_head, nothing)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HEAD_TIMEOUT_S + 10)
    assert time.monotonic() - began >= HEAD_TIMEOUT_S
    head, _, body = answers["half"].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert orjson.loads(body)["status"] == 408
    assert answers["silent"] == b""  # closed without an answer: there was no request


def _read_until_closed(s: socket.socket) -> bytes:
    s.settimeout(HEAD_TIMEOUT_S + 5)
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except (ssl.SSLError, ConnectionResetError):
        pass  # the server closed without TLS's close_notify
    return data
