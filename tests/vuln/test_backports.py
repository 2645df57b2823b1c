"""Distribution builds read from banners, and the tracker's verdict on them (real CveStore with
the fixture tracker: tests/vuln/fixtures/debian-tracker.json)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netscand.vuln import backports
from netscand.vuln.backports import Build
from netscand.vuln.match import package_of
from netscand.vuln.records import Finding
from netscand.vuln.store import CveStore
from tests.vuln.nvd_json import tracker, write


@pytest.mark.parametrize(("banner", "upstream", "expected"), [
    ("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3", "9.2p1", Build("debian", "9.2p1", "2+deb12u3", "bookworm")),
    ("SSH-2.0-OpenSSH_8.4p1 Debian-5+deb11u3", "8.4p1", Build("debian", "8.4p1", "5+deb11u3", "bullseye")),
    ("SSH-2.0-OpenSSH_10.0p1 Debian-7+deb13u1", "10.0p1", Build("debian", "10.0p1", "7+deb13u1", "trixie")),
    ("SSH-2.0-OpenSSH_7.9p1 Raspbian-10+deb10u2", "7.9p1", Build("debian", "7.9p1", "10+deb10u2", "buster")),
    ("5.5.5-10.11.19-MariaDB-0+deb12u1", "10.11.19", Build("debian", "10.11.19", "0+deb12u1", "bookworm")),
    ("5.5.5-10.11.19-MariaDB-0+deb12u1-log", "10.11.19", Build("debian", "10.11.19", "0+deb12u1", "bookworm")),
    ("dnsmasq-2.90-4~deb12u2", "2.90", Build("debian", "2.90", "4~deb12u2", "bookworm")),
    ("SSH-2.0-OpenSSH_9.2p1 Debian-2", "9.2p1", Build("debian", "9.2p1", "2", None)),  # unstable: no release
    ("SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.10", "8.9p1", Build("ubuntu", "8.9p1", "3ubuntu0.10", None)),
    ("10.6.16-MariaDB-0ubuntu0.22.04.1", "10.6.16", Build("ubuntu", "10.6.16", "0ubuntu0.22.04.1", None)),
])
def test_build_from_banner(banner: str, upstream: str, expected: Build) -> None:
    assert backports.build(banner, upstream) == expected


@pytest.mark.parametrize(("banner", "upstream"), [
    ("SSH-2.0-OpenSSH_9.2p1", "9.2p1"), ("Server: nginx/1.22.1", "1.22.1"), ("5.5.5-10.11.19-MariaDB-log", "10.11.19"),
    ("10.11.6-MariaDB-1:10.11.6+maria~deb12", "10.11.6"),  # MariaDB's own repository: not a Debian build
    (None, "9.2p1"), ("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3", None), ("SSH-2.0-OpenSSH_9.3p1 Debian-2", "9.2p1"),
])
def test_no_build(banner: str | None, upstream: str | None) -> None:
    assert backports.build(banner, upstream) is None


def test_the_epoch_a_banner_never_shows_comes_from_the_tracker() -> None:
    assert Build("debian", "9.2p1", "2+deb12u3", "bookworm").version("1") == "1:9.2p1-2+deb12u3"
    assert Build("debian", "2.90", "4~deb12u2", "bookworm").version(None) == "2.90-4~deb12u2"


def finding(cve_id: str) -> Finding:
    return Finding(id=cve_id, status="vulnerable", cvss=8.1, severity="high", summary="s",
                   published="2024-07-01T13:15:06.467", evidence="cpe:2.3:a:openbsd:openssh:*:*:*:*:*:*:*:* < 9.8p1")


def decide(store: CveStore, cve_id: str, build: Build | None, package: str | None = "openssh") -> Finding:
    return backports.decide(finding(cve_id), build, package, store)


BOOKWORM_U10 = Build("debian", "9.2p1", "2+deb12u10", "bookworm")


def test_fixed_in_an_earlier_build(lab_cves: CveStore) -> None:
    decided = decide(lab_cves, "CVE-2024-6387", BOOKWORM_U10)
    assert (decided.status, decided.fixed_version) == ("fixed_by_distribution", "1:9.2p1-2+deb12u3")
    assert decided.evidence.endswith("; Debian tracker: fixed in openssh 1:9.2p1-2+deb12u3 (bookworm), "
                                     "running 1:9.2p1-2+deb12u10")


def test_fixed_in_this_very_build(lab_cves: CveStore) -> None:
    decided = decide(lab_cves, "CVE-2024-6387", Build("debian", "9.2p1", "2+deb12u3", "bookworm"))
    assert (decided.status, decided.fixed_version) == ("fixed_by_distribution", "1:9.2p1-2+deb12u3")


def test_fixed_only_in_a_later_build(lab_cves: CveStore) -> None:
    decided = decide(lab_cves, "CVE-2024-6387", Build("debian", "9.2p1", "2+deb12u2", "bookworm"))
    assert (decided.status, decided.fixed_version) == ("vulnerable", None)
    assert "later than the running 1:9.2p1-2+deb12u2" in decided.evidence


def test_a_release_never_affected(lab_cves: CveStore) -> None:
    decided = decide(lab_cves, "CVE-2024-6387", Build("debian", "8.4p1", "5+deb11u3", "bullseye"))
    assert (decided.status, decided.fixed_version) == ("fixed_by_distribution", "0")
    assert "openssh in bullseye was never affected (fixed_version 0)" in decided.evidence


def test_open_in_the_release(lab_cves: CveStore) -> None:
    build = Build("debian", "3.0.3", "13", "bookworm")
    decided = decide(lab_cves, "CVE-2021-30047", build, "vsftpd")
    assert decided.status == "vulnerable" and decided.evidence.endswith("Debian tracker: open in bookworm (vsftpd)")


def test_undetermined_in_the_release_stays_vulnerable(tmp_path: Path) -> None:
    store = CveStore(tmp_path / "cve.db")
    store.import_tracker(write(tmp_path / "tracker.json", tracker(
        ("openssh", "CVE-2024-6387", "bookworm", "undetermined", None),
        ("openssh", "CVE-2023-48795", "bookworm", "undetermined", "1:9.2p1-2+deb12u2"))))
    for cve_id in ("CVE-2024-6387", "CVE-2023-48795"):  # a fixed_version beside it decides nothing
        decided = decide(store, cve_id, BOOKWORM_U10)
        assert (decided.status, decided.fixed_version) == ("vulnerable", None)
        assert decided.evidence.endswith("; Debian tracker: undetermined in bookworm (openssh)")


@pytest.mark.parametrize(("build", "package", "reason"), [
    (Build("debian", "9.2p1", "2+deb12u10", "trixie"), "openssh", "Debian tracker has no trixie entry for openssh"),
    (Build("debian", "9.2p1", "2", None), "openssh", "Debian build 2 names no release: not checked"),
    (BOOKWORM_U10, None, "no Debian source package known for this product"),
    (Build("ubuntu", "9.2p1", "2ubuntu0.2", None), "openssh", "Ubuntu build 2ubuntu0.2: the Debian tracker cannot"),
])
def test_undecided_stays_vulnerable_and_says_why(lab_cves: CveStore, build: Build, package: str | None,
                                                 reason: str) -> None:
    decided = decide(lab_cves, "CVE-2024-6387", build, package)
    assert decided.status == "vulnerable" and decided.fixed_version is None and reason in decided.evidence


def test_no_build_leaves_the_finding_as_it_was(lab_cves: CveStore) -> None:
    assert decide(lab_cves, "CVE-2024-6387", None) == finding("CVE-2024-6387")


@pytest.mark.parametrize(("vendor", "product", "package"), [
    ("openbsd", "openssh", "openssh"), ("f5", "nginx", "nginx"), ("nginx", "nginx", "nginx"),
    ("f5", "nginx_open_source", "nginx"), ("igor_sysoev", "nginx", "nginx"), ("isc", "bind", "bind9"),
    ("net-snmp", "net-snmp", "net-snmp"), ("redis", "redis", "redis"), ("redislabs", "redis", "redis"),
    ("beasts", "vsftpd", "vsftpd"), ("vsftpd_project", "vsftpd", "vsftpd"), ("vsftpd", "vsftpd", "vsftpd"),
    ("mariadb", "mariadb", "mariadb"), ("oracle", "mysql", None), ("example", "unknown", None),
])
def test_products_map_to_debian_source_packages_by_any_of_their_names(vendor: str, product: str,
                                                                      package: str | None) -> None:
    assert package_of(vendor, product) == package


@given(st.text(max_size=600), st.text(max_size=20))
def test_never_raises(banner: str, upstream: str) -> None:
    found = backports.build(banner, upstream)
    assert found is None or found.distro in ("debian", "ubuntu")


def test_the_version_is_found_as_a_whole_word_in_the_banners_spelling() -> None:
    # "2.0" first stands in "SSH-2.0-", which is followed by no build.
    assert backports.build("SSH-2.0-Foo_2.0 Debian-1+deb12u1", "2.0") == Build("debian", "2.0", "1+deb12u1", "bookworm")
    assert backports.build("Foo_1.0RC1-3+deb11u1", "1.0rc1") == Build("debian", "1.0RC1", "3+deb11u1", "bullseye")
