"""CPE 2.3 formatted strings: escapes, ANY and NA, and totality on any text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netscand.profiling.services.base import cpe as build_cpe
from netscand.vuln import cpe
from netscand.vuln.cpe import ANY, NA, Cpe


def test_openssh_with_update() -> None:
    assert cpe.parse("cpe:2.3:a:openbsd:openssh:9.2:p1:*:*:*:*:*:*") == Cpe("a", "openbsd", "openssh", "9.2", "p1")


def test_any_and_na() -> None:
    name = cpe.parse("cpe:2.3:o:linux:linux_kernel:-:*:*:*:*:*:*:*")
    assert name is not None and name.version == NA and name.update == ANY and name.part == "o"


def test_escapes_are_undone() -> None:
    name = cpe.parse(r"cpe:2.3:a:foo\:bar:widget\!:1\.0\+dfsg:*:*:*:*:*:*:*")
    assert name == Cpe("a", "foo:bar", "widget!", "1.0+dfsg")


def test_case_is_folded_and_sw_edition_kept() -> None:
    name = cpe.parse("CPE:2.3:A:F5:NGINX:*:*:*:*:open_source:*:*:*")
    assert name is not None and (name.vendor, name.product, name.sw_edition) == ("f5", "nginx", "open_source")


def test_trailing_any_may_be_left_out() -> None:
    assert cpe.parse("cpe:2.3:a:redis:redis:7.0.15") == Cpe("a", "redis", "redis", "7.0.15")


def test_what_service_detection_writes_reads_back() -> None:
    written = build_cpe("beasts", "vsftpd", "3.0.3")
    assert cpe.parse(written) == Cpe("a", "beasts", "vsftpd", "3.0.3")
    assert cpe.parse(build_cpe("x", "y", "1.0 (beta)")) == Cpe("a", "x", "y", "1.0 (beta)")


@pytest.mark.parametrize("text", [
    None, "", "cpe:2.3:", "cpe:/a:openbsd:openssh:9.2", "cpe:2.3:a:openbsd", "cpe:2.3:x:openbsd:openssh:1",
    "cpe:2.3:a:*:openssh:1", "cpe:2.3:a:openbsd::1", "cpe:2.3:a:openbsd:openssh:9.2\\",
    "cpe:2.3:a:b:c:1:2:3:4:5:6:7:8:9", "cpe:2.3:a:b:c:" + "1" * 2000, 42,
])
def test_not_a_cpe_is_none(text: object) -> None:
    assert cpe.parse(text) is None


@given(st.text(max_size=300))
def test_never_raises(text: str) -> None:
    name = cpe.parse(text)
    assert name is None or isinstance(name, Cpe)
    name = cpe.parse("cpe:2.3:" + text)
    assert name is None or len(name.extras()) == 6
