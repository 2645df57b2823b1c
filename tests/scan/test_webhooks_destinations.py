"""A webhook's destination: its URL read (totally: any text is a URL or one DestinationError),
its host resolved, every address checked against the allowlist, the address checked kept."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netscand.scan.destinations import Destination, DestinationError, parse, resolve

LOOPBACK = ["127.0.0.0/8"]


def _resolve(url: str, allowed: list[str]) -> Destination:
    return asyncio.run(resolve(url, allowed))


@given(st.text(max_size=300) | st.builds(lambda tail: "http://" + tail, st.text(max_size=100)))
@settings(max_examples=500, deadline=None)
def test_parse_is_total(text: str) -> None:
    try:
        url = parse(text)
    except DestinationError as exc:
        assert exc.status == 422 and exc.detail
    else:
        assert url.scheme in ("http", "https") and url.host


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1", "http:///x", "http://exa%20mple/",
                                 "http://127.0.0.1:70000/", "http://[zz]/", "file:///etc/passwd"])
def test_what_is_no_webhook_url(url: str) -> None:
    with pytest.raises(DestinationError) as caught:
        parse(url)
    assert caught.value.status == 422


def test_a_literal_inside_is_connected_to_as_is() -> None:
    found = _resolve("http://127.0.0.1:8080/hooks?x=1", LOOPBACK)
    assert str(found.url) == "http://127.0.0.1:8080/hooks?x=1" and found.address == ipaddress.ip_address("127.0.0.1")


def test_a_name_is_connected_to_at_the_address_checked() -> None:
    found = _resolve("http://localhost:8080/hooks", LOOPBACK)
    assert found.host == "localhost" and str(found.url) == "http://127.0.0.1:8080/hooks"


@pytest.mark.parametrize("url, said", [
    ("http://198.18.0.20/", "198.18.0.20 is outside webhooks.allowed_destinations (127.0.0.0/8)"),
    ("http://localhost/", "localhost resolves to 127.0.0.1, which is outside"),
    ("http://[::ffff:127.0.0.1]/", "127.0.0.1 is outside"),  # a mapped address is its IPv4 one
    ("http://[::1]/", "::1 is outside"),
])
def test_an_address_outside_is_refused_saying_how_to_allow_it(url: str, said: str) -> None:
    allowed = ["198.18.0.0/15"] if "198.18" not in url else LOOPBACK
    with pytest.raises(DestinationError) as caught:
        _resolve(url, allowed)
    assert caught.value.status == 403 and said.replace("(127.0.0.0/8)", f"({allowed[0]})") in caught.value.detail
    assert "add a block holding it" in caught.value.detail and "[webhooks]" in caught.value.detail


def test_an_empty_allowlist_refuses_everything_saying_so() -> None:
    with pytest.raises(DestinationError) as caught:
        _resolve("http://127.0.0.1/", [])
    assert caught.value.status == 403 and "allowed_destinations is empty" in caught.value.detail


def test_a_name_that_does_not_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    # The resolver's answer stood in for: a name that is not in /etc/hosts would be asked of
    # the host's DNS server, outside the loopback the tests keep to.
    async def no_such_name(self: asyncio.AbstractEventLoop, host: str, port: int, **kwargs: object) -> list:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", no_such_name)
    with pytest.raises(DestinationError) as caught:
        _resolve("http://no-such-host.invalid/", LOOPBACK)
    assert caught.value.status == 422 and "does not resolve" in caught.value.detail
