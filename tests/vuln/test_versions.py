"""Vendor and Debian version strings: how they read, how they order, range edges, and that
nothing read from a banner or a feed can make them raise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netscand.vuln import versions
from netscand.vuln.versions import Range, VendorVersion


@pytest.mark.parametrize(("text", "update", "expected"), [
    ("9.2p1", None, VendorVersion("9.2", "p1")),
    ("9.2", "p1", VendorVersion("9.2", "p1")),  # NVD's update field
    ("9.2", "*", VendorVersion("9.2")),
    ("9.2", "-", VendorVersion("9.2")),
    ("10.11.19-MariaDB-0+deb12u1", None, VendorVersion("10.11.19", None, "0+deb12u1")),
    ("2.90-4~deb12u2", None, VendorVersion("2.90", None, "4~deb12u2")),
    ("2.3.19.1", None, VendorVersion("2.3.19.1")),
    ("1.22.1", None, VendorVersion("1.22.1")),
    ("7.0.15", None, VendorVersion("7.0.15")),
    ("2.90", None, VendorVersion("2.90")),
    ("3.0.3", None, VendorVersion("3.0.3")),
    ("1.1.1k", None, VendorVersion("1.1.1", "k")),
    ("1.0-rc.1", None, VendorVersion("1.0", "rc1")),
])
def test_parse(text: str, update: str | None, expected: VendorVersion) -> None:
    assert versions.parse(text, update) == expected


@pytest.mark.parametrize("text", ["", "abc", "v", "9.2 p1", "1..2", "x1.0", "1.0;rm", "9" * 200, "-1", "\u0669.\u0662"])
def test_unreadable_is_none(text: str) -> None:
    assert versions.parse(text) is None


def V(text: str, update: str | None = None) -> VendorVersion:
    parsed = versions.parse(text, update)
    assert parsed is not None
    return parsed


@pytest.mark.parametrize(("a", "b", "order"), [
    (V("9.2", "p1"), V("9.8p1"), -1),
    (V("9.2p1"), V("9.2", "p1"), 0),
    (V("9.2p1"), V("9.2p2"), -1),
    (V("9.8"), V("9.8p1"), 0),  # p1 is the portable edition of the 9.8 release
    (V("9.3"), V("9.3p2"), -1),  # no update is p1, older than p2
    (V("1.1.1"), V("1.1.1l"), -1),  # OpenSSL's lettered updates come after the release
    (V("1.0rc1"), V("1.0"), -1),  # a pre-release comes before its release
    (V("1.0rc1"), V("1.0p1"), -1),
    (V("2.90"), V("2.9"), 1),  # numeric, not textual
    (V("10.11.19"), V("10.11.9"), 1),
    (V("2.3.19.1"), V("2.3.19"), 1),
    (V("7.0"), V("7.0.0"), 0),
    (V("10.11.19-MariaDB-0+deb12u1"), V("10.11.19"), 0),  # builds are not upstream versions
    (V("1.22.1"), V("1.25.3"), -1),
])
def test_compare(a: VendorVersion, b: VendorVersion, order: int) -> None:
    assert versions.compare(a, b) == order
    assert versions.compare(b, a) == -order


@pytest.mark.parametrize(("version", "bounds", "inside"), [
    ("9.2p1", Range(start_including="8.5p1", end_excluding="9.8p1"), True),
    ("8.5p1", Range(start_including="8.5p1", end_excluding="9.8p1"), True),  # including: the edge is in
    ("9.8p1", Range(start_including="8.5p1", end_excluding="9.8p1"), False),  # excluding: the edge is out
    ("8.4p1", Range(start_including="8.5p1", end_excluding="9.8p1"), False),
    ("1.22.1", Range(start_excluding="1.22.1"), False),
    ("1.22.2", Range(start_excluding="1.22.1"), True),
    ("3.0.2", Range(end_including="3.0.2"), True),
    ("3.0.3", Range(end_including="3.0.2"), False),
    ("2.89", Range(end_excluding="2.90"), True),
    ("2.90", Range(end_excluding="2.90"), False),
    ("7.0.15", Range(start_including="7.0.9", end_excluding="7.0.15"), False),
    ("7.0.15", Range(start_including="7.0.0", end_excluding="7.2.6"), True),
    ("10.11.19", Range(start_including="10.7.0", end_excluding="10.12.0"), True),
    ("9.2p1", Range(), True),
    ("1.1.1", Range(end_excluding="1.1.1l"), True),  # OpenSSL 1.1.1 itself lacks 1.1.1l's fixes
    ("9.3", Range(end_excluding="9.3p2"), True),  # OpenSSH 9.3 is 9.3p1
    ("9.9", Range(end_excluding="9.9p2"), True),
])
def test_in_range(version: str, bounds: Range, inside: bool) -> None:
    assert versions.in_range(V(version), bounds) is inside


def test_unreadable_bound_cannot_compare() -> None:
    assert versions.in_range(V("1.0"), Range(end_excluding="soon")) is None


@pytest.mark.parametrize(("a", "b", "order"), [
    ("1:9.2p1-2+deb12u3", "1:9.2p1-2+deb12u10", -1),  # numeric, not textual
    ("1:9.2p1-2+deb12u2", "1:9.2p1-2+deb12u2", 0),
    ("9.2p1-2+deb12u10", "1:9.2p1-2+deb12u1", -1),  # no epoch is epoch 0
    ("2.90-4~deb12u1", "2.90-4", -1),  # "~" sorts before anything
    ("5:7.0.15-1~deb12u2", "5:7.0.15-1~deb12u10", -1),
    ("1:10.11.13-0+deb12u1", "1:10.11.19-0+deb12u1", -1),
    ("0", "1:9.2p1-1", -1),
])
def test_debian_compare(a: str, b: str, order: int) -> None:
    assert versions.debian_compare(a, b) == order


@pytest.mark.parametrize("text", ["", "abc", "1:", "x y", None, "1:" + "9" * 200])
def test_debian_unreadable_cannot_compare(text: str | None) -> None:
    assert versions.debian_compare(text, "1.0-1") is None


@given(st.text(max_size=80), st.one_of(st.none(), st.text(max_size=12)), st.text(max_size=80))
def test_never_raises(text: str, update: str | None, other: str) -> None:
    parsed, bound = versions.parse(text, update), versions.parse(other)
    if parsed is not None and bound is not None:
        assert versions.compare(parsed, bound) in (-1, 0, 1)
    if parsed is not None:
        assert versions.in_range(parsed, Range(start_excluding=other, end_including=text)) in (True, False, None)
    assert versions.debian_compare(text, other) in (-1, 0, 1, None)
