"""A webhook's destination: its URL read (totally: any text is a URL or one DestinationError),
its host resolved, every address checked against the allowlist, the address checked kept."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netscand.scan.destinations import (
    SPECIAL,
    Destination,
    DestinationError,
    local_networks,
    parse,
    resolve,
)

LOOPBACK = ["127.0.0.1/32"]


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
    assert found.addresses == (ipaddress.ip_address("127.0.0.1"),)
    assert str(found.at(found.addresses[0])) == "http://127.0.0.1:8080/hooks?x=1"


def test_a_name_is_connected_to_at_the_address_checked() -> None:
    found = _resolve("http://localhost:8080/hooks", LOOPBACK)
    assert found.host == "localhost" and str(found.at(found.addresses[0])) == "http://127.0.0.1:8080/hooks"


def test_every_address_of_a_name_is_checked_and_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    async def two(self: asyncio.AbstractEventLoop, host: str, port: int, **kwargs: object) -> list:
        return [(2, 1, 6, "", ("198.18.0.20", port)), (10, 1, 6, "", ("64:ff9b::c612:15", port, 0, 0))]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", two)
    found = _resolve("http://receiver.test/", ["198.18.0.20/31"])
    assert found.addresses == (ipaddress.ip_address("198.18.0.20"), ipaddress.ip_address("198.18.0.21"))
    with pytest.raises(DestinationError) as caught:
        _resolve("http://receiver.test/", ["198.18.0.20/32"])
    assert "receiver.test resolves to 198.18.0.21, which is outside" in caught.value.detail


SPECIAL_ADDRESSES = ("127.0.0.1", "127.8.9.10", "169.254.169.254", "0.0.0.0", "224.0.0.1", "255.255.255.255",
                     "::1", "::", "fe80::1", "ff02::1")
# IPv6 spellings of an IPv4 address: mapped, compatible, NAT64, 6to4
EMBEDDED = ("::ffff:{}", "::{}", "64:ff9b::{}", "2002:{:x}:{:x}::1")


def _spelled(template: str, v4: ipaddress.IPv4Address) -> str:
    return template.format(int(v4) >> 16, int(v4) & 0xFFFF) if ":x}" in template else template.format(v4)


@given(st.sampled_from(SPECIAL_ADDRESSES) | st.sampled_from(EMBEDDED).map(
    lambda t: _spelled(t, ipaddress.IPv4Address("127.0.0.1"))))
def test_the_whole_internet_opens_no_special_address(address: str) -> None:
    with pytest.raises(DestinationError) as caught:
        _resolve(f"http://[{address}]/" if ":" in address else f"http://{address}/", ["0.0.0.0/0", "::/0"])
    assert caught.value.status == 403 and "which only a block inside" in caught.value.detail


@given(st.ip_addresses(v=4), st.sampled_from(EMBEDDED))
def test_an_embedded_ipv4_address_is_checked_as_itself(v4: ipaddress.IPv4Address, template: str) -> None:
    spelled = ipaddress.ip_address(_spelled(template, v4))
    if int(spelled) > 1:  # :: and ::1 are IPv6's own
        # Its /32 opens it, even a special one's (which lies inside its range), and is named when not.
        assert _resolve(f"http://[{spelled}]/", [f"{v4}/32"]).addresses == (v4,)
        with pytest.raises(DestinationError) as caught:
            _resolve(f"http://[{spelled}]/", [f"{spelled}/128"])
        assert f"{v4} is outside" in caught.value.detail


@pytest.mark.parametrize("address", ["127.0.0.1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "::7f00:1",
                                     "2002:7f00:1::"])
def test_a_narrow_block_opens_its_special_address(address: str) -> None:
    assert _resolve(f"http://[{address}]/" if ":" in address else f"http://{address}/",
                    ["127.0.0.1/32"]).addresses == (ipaddress.ip_address("127.0.0.1"),)
    with pytest.raises(DestinationError):
        _resolve(f"http://[{address}]/" if ":" in address else f"http://{address}/", ["0.0.0.0/0", "::/0"])


def test_a_block_inside_a_special_range_opens_only_that_block() -> None:
    assert _resolve("http://169.254.169.254/", ["169.254.169.254/32"]).addresses
    with pytest.raises(DestinationError) as caught:
        _resolve("http://169.254.169.253/", ["169.254.169.254/32", "0.0.0.0/0"])
    assert "it is link-local, which only a block inside 169.254.0.0/16 opens" in caught.value.detail
    assert _resolve("http://[::1]/", ["::1/128"]).addresses == (ipaddress.ip_address("::1"),)


@pytest.mark.parametrize("url, said", [
    ("http://198.18.0.20/", "198.18.0.20 is outside webhooks.allowed_destinations (127.0.0.1/32)"),
    ("http://localhost/", "localhost resolves to 127.0.0.1, which is outside"),
    ("http://[::ffff:127.0.0.1]/", "127.0.0.1 is outside"),  # a mapped address is its IPv4 one
    ("http://[::1]/", "::1 is outside"),
    ("http://[64:ff9b::a00:1]/", "10.0.0.1 is outside"),  # NAT64's too
])
def test_an_address_outside_is_refused_saying_how_to_allow_it(url: str, said: str) -> None:
    allowed = ["198.18.0.0/15"] if "198.18" not in url else LOOPBACK
    with pytest.raises(DestinationError) as caught:
        _resolve(url, allowed)
    assert caught.value.status == 403 and said.replace("(127.0.0.1/32)", f"({allowed[0]})") in caught.value.detail
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


def _own_addresses() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """This host's own addresses that no special range already reserves."""
    return [net.network_address for net in local_networks() if net.prefixlen == net.max_prefixlen
            and not any(net.version == special.version and net.subnet_of(special)  # type: ignore[arg-type]
                        for _, special in SPECIAL)]


def test_the_hosts_own_addresses_are_opened_only_by_their_own_block() -> None:
    # This host's real addresses (its LAN's, a bridge's), checked only: nothing connects to them.
    own = _own_addresses()
    assert own, "this test needs a host with an address beside loopback and link-local"
    for address in own:
        url = f"http://[{address}]/" if address.version == 6 else f"http://{address}/"
        lan = ipaddress.ip_network(f"{address}/{address.max_prefixlen - 8}", strict=False)
        for allowed in (["0.0.0.0/0", "::/0"], [str(lan)]):
            with pytest.raises(DestinationError) as caught:
                _resolve(url, allowed)
            assert caught.value.status == 403 and f"it is an address of this host, which only a block inside " \
                f"{address}/{address.max_prefixlen} opens" in caught.value.detail
        assert _resolve(url, [f"{address}/{address.max_prefixlen}"]).addresses == (address,)


CHECK_IN_NAMESPACE = """
import asyncio, json, sys
from netscand.scan.destinations import DestinationError, resolve
answers = []
for url, allowed in json.loads(sys.argv[1]):
    try:
        answers.append([str(a) for a in asyncio.run(resolve(url, allowed)).addresses])
    except DestinationError as exc:
        answers.append(exc.detail)
print(json.dumps(answers))
"""


def _checked_in(netns: str, asked: list[tuple[str, list[str]]]) -> list[list[str] | str]:
    """Each URL's addresses, or why it is refused, as the check makes them inside `netns`."""
    done = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", CHECK_IN_NAMESPACE,
                           json.dumps(asked)], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(done.stdout)


def test_an_address_of_a_new_interface_is_the_hosts_own(netns: str) -> None:
    # A new interface's address in a throwaway namespace, read by the check run there (the
    # daemon's own namespace is what it reads), and by nothing else: nothing is sent. A veth
    # pair with both ends inside it, as the lab's kernels may not have the dummy driver.
    def ip(*args: str) -> None:
        subprocess.run(["ip", "-n", netns, *args], check=True)

    ip("link", "add", "own0", "type", "veth", "peer", "name", "own1")
    ip("address", "add", "198.19.250.1/24", "dev", "own0")
    ip("address", "add", "fd00:250::1/64", "dev", "own0", "nodad")
    ip("address", "add", "fe80::250:1/64", "dev", "own0", "nodad")
    ip("link", "set", "own0", "up")
    asked = [("http://198.19.250.1/", ["0.0.0.0/0"]), ("http://198.19.250.1/", ["198.19.250.0/24"]),
             ("http://198.19.250.1/", ["198.19.250.1/32"]), ("http://198.19.250.2/", ["198.19.250.0/24"]),
             ("http://[fd00:250::1]/", ["fd00::/8"]), ("http://[fd00:250::1]/", ["fd00:250::1/128"]),
             ("http://[fd00:250::2]/", ["fd00::/8"]),
             ("http://[fe80::250:1]/", ["fe80::/64"]), ("http://[fe80::250:1]/", ["fe80::250:1/128"]),
             ("http://[fe80::250:2]/", ["fe80::/64"])]
    answers = _checked_in(netns, asked)
    refused_v4, refused_lan, own_v4, neighbour, refused_v6, own_v6, neighbour_v6 = answers[:7]
    refused_ll, own_ll, neighbour_ll = answers[7:]
    # Its link-local address lies inside fe80::/10, yet fe80::/64 opens only its neighbours': the
    # narrowest reserved range holding an address decides, here the host's own /128.
    for refused, net in ((refused_v4, "198.19.250.1/32"), (refused_lan, "198.19.250.1/32"),
                         (refused_v6, "fd00:250::1/128"), (refused_ll, "fe80::250:1/128")):
        assert f"it is an address of this host, which only a block inside {net} opens" in refused
    assert (own_v4, neighbour) == (["198.19.250.1"], ["198.19.250.2"])  # a neighbour on its LAN is no own address
    assert (own_v6, neighbour_v6) == (["fd00:250::1"], ["fd00:250::2"])
    assert (own_ll, neighbour_ll) == (["fe80::250:1"], ["fe80::250:2"])
    # Outside that namespace the address is nobody's: the check reads the namespace it runs in.
    assert _resolve("http://198.19.250.1/", ["198.19.250.0/24"]).addresses == (ipaddress.ip_address("198.19.250.1"),)


LOCAL_NETWORKS_IN_NAMESPACE = """
import json
from netscand.scan.destinations import local_networks
print(json.dumps([str(net) for net in local_networks()]))
"""


def test_a_local_default_route_makes_every_address_the_hosts_own(netns: str) -> None:
    # `local default` in the local table: the host takes every address as its own (a
    # transparent proxy's setup). Only in a throwaway namespace, and nothing is sent.
    for family, default in (("-4", "0.0.0.0/0"), ("-6", "::/0")):
        subprocess.run(["ip", "-n", netns, family, "route", "add", "local", "default", "dev", "lo", "table", "local"],
                       check=True)
    done = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", LOCAL_NETWORKS_IN_NAMESPACE],
                          capture_output=True, text=True, check=True, timeout=60)
    assert {"0.0.0.0/0", "::/0"} <= set(json.loads(done.stdout))
    # Any block lies inside them, so they refuse nothing the allowlist holds; a special range still does.
    lab, loopback = _checked_in(netns, [("http://198.18.0.20/", ["198.18.0.0/15"]),
                                        ("http://127.0.0.5/", ["0.0.0.0/0"])])
    assert lab == ["198.18.0.20"] and "it is loopback, which only a block inside 127.0.0.0/8 opens" in loopback
