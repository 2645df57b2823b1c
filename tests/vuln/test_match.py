"""The matcher's rules on small records of its own (a real CveStore on a temp file): how
configurations combine (AND/OR, negate, running-on criteria), what it says when nothing can be
matched, and that no CPE or banner text can make it raise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netscand.vuln.match import Matcher, PortMatch
from netscand.vuln.store import CveStore
from tests.vuln import nvd_json

SSH = "cpe:2.3:a:openbsd:openssh:*:*:*:*:*:*:*:*"
PORT = "cpe:2.3:a:openbsd:openssh:9.2:p1:*:*:*:*:*:*"
LINUX = "cpe:2.3:o:linux:linux_kernel:-:*:*:*:*:*:*:*"


def crit(criteria: str = SSH, vulnerable: bool = True, **bounds: str) -> dict[str, Any]:
    return {"vulnerable": vulnerable, "criteria": criteria, **bounds}


def node(*matches: dict[str, Any], operator: str = "OR", negate: bool = False) -> dict[str, Any]:
    return {"operator": operator, "negate": negate, "cpeMatch": list(matches)}


def store_of(tmp_path: Path, *configurations: list[dict[str, Any]]) -> CveStore:
    """One record per configuration list, CVE-2024-0001 onwards."""
    records = [nvd_json.cve(f"CVE-2024-{i + 1:04d}", configurations=c) for i, c in enumerate(configurations)]
    store = CveStore(tmp_path / "cve.db")
    store.import_nvd([nvd_json.write(tmp_path / "feed.json", nvd_json.feed(*records))])
    return store


def statuses(result: PortMatch) -> dict[str, str]:
    return {f.id: f.status for f in result.findings}


def test_negate_turns_a_node_around(tmp_path: Path) -> None:
    below_9_6 = crit(versionEndExcluding="9.6")
    store = store_of(tmp_path,
                     [{"operator": "AND", "nodes": [node(crit()), node(below_9_6, negate=True)]}],  # not < 9.6
                     [{"operator": "AND", "nodes": [node(crit()), node(crit(versionEndExcluding="9.0"), negate=True)]}],
                     [{"nodes": [node(below_9_6)], "negate": True}])
    assert statuses(Matcher(store).match(PORT, None, None)) == {"CVE-2024-0002": "vulnerable"}


def test_a_negated_platform_the_os_guess_cannot_decide_stays_undecided(tmp_path: Path) -> None:
    windows = "cpe:2.3:o:microsoft:windows:-:*:*:*:*:*:*:*"
    store = store_of(tmp_path, [{"operator": "AND", "nodes": [
        node(crit()), node(crit(windows, vulnerable=False), negate=True)]}])  # openssh, not on Windows
    assert statuses(Matcher(store).match(PORT, None, None)) == {"CVE-2024-0001": "needs_platform"}
    assert statuses(Matcher(store).match(PORT, None, "Windows")) == {}


def test_and_within_a_node_needs_every_criterion(tmp_path: Path) -> None:
    store = store_of(tmp_path,
                     [{"nodes": [node(crit(versionStartIncluding="9.0"), crit(versionEndExcluding="9.3"),
                                      operator="AND")]}],
                     [{"nodes": [node(crit(versionStartIncluding="9.0"), crit(versionEndExcluding="9.2"),
                                      operator="AND")]}])
    assert statuses(Matcher(store).match(PORT, None, None)) == {"CVE-2024-0001": "vulnerable"}


def test_a_criterion_for_another_product_is_not_this_port(tmp_path: Path) -> None:
    putty = "cpe:2.3:a:putty:putty:*:*:*:*:*:*:*:*"
    store = store_of(tmp_path, [{"nodes": [node(crit(putty), crit(SSH, versionEndExcluding="9.0"))]}],
                     [{"operator": "AND", "nodes": [node(crit(SSH)), node(crit(putty))]}])
    assert Matcher(store).match(PORT, None, None).findings == ()


def test_running_with_another_product_cannot_be_decided(tmp_path: Path) -> None:
    glibc = "cpe:2.3:a:gnu:glibc:*:*:*:*:*:*:*:*"
    store = store_of(tmp_path, [{"operator": "AND", "nodes": [node(crit()), node(crit(glibc, vulnerable=False))]}])
    result = Matcher(store).match(PORT, None, "Linux")
    assert statuses(result) == {"CVE-2024-0001": "needs_platform"}
    assert f"needs {glibc} (OS guess: Linux)" in result.findings[0].evidence


@pytest.mark.parametrize(("os_name", "status"), [
    ("Linux", "vulnerable"), ("Linux 5.x (Debian)", "vulnerable"), ("Debian", "vulnerable"),
    ("Windows", "needs_platform"), ("BSD", "needs_platform"), (None, "needs_platform"), ("", "needs_platform"),
])
def test_a_platform_node_needs_the_os_guess(tmp_path: Path, os_name: str | None, status: str) -> None:
    store = store_of(tmp_path, [{"operator": "AND", "nodes": [node(crit()), node(crit(LINUX, vulnerable=False))]}])
    assert statuses(Matcher(store).match(PORT, None, os_name)) == {"CVE-2024-0001": status}


@pytest.mark.parametrize(("platform", "os_name", "status"), [
    ("cpe:2.3:o:redhat:enterprise_linux:9.0:*:*:*:*:*:*:*", "Linux", "needs_platform"),
    ("cpe:2.3:o:google:android:-:*:*:*:*:*:*:*", "Linux", "needs_platform"),
    ("cpe:2.3:o:debian:debian_linux:12.0:*:*:*:*:*:*:*", "Linux", "needs_platform"),
    ("cpe:2.3:o:debian:debian_linux:12.0:*:*:*:*:*:*:*", "Linux 5.x (Debian)", "vulnerable"),
    ("cpe:2.3:o:redhat:enterprise_linux:9.0:*:*:*:*:*:*:*", "Red Hat Enterprise Linux", "vulnerable"),
    ("cpe:2.3:o:debian:debian_linux:12.0:*:*:*:*:*:*:*", "Ubuntu", "needs_platform"),
])
def test_a_plain_linux_guess_is_the_kernel_not_a_distribution(tmp_path: Path, platform: str, os_name: str,
                                                              status: str) -> None:
    store = store_of(tmp_path, [{"operator": "AND", "nodes": [node(crit()), node(crit(platform, vulnerable=False))]}])
    assert statuses(Matcher(store).match(PORT, None, os_name)) == {"CVE-2024-0001": status}


def test_hardware_is_never_known_from_an_os_guess(tmp_path: Path) -> None:
    router = "cpe:2.3:h:netgear:r7000:-:*:*:*:*:*:*:*"
    store = store_of(tmp_path, [{"operator": "AND", "nodes": [node(crit()), node(crit(router, vulnerable=False))]}])
    assert statuses(Matcher(store).match(PORT, None, "Linux")) == {"CVE-2024-0001": "needs_platform"}


def test_a_plain_configuration_beats_one_that_needs_a_platform(tmp_path: Path) -> None:
    store = store_of(tmp_path, [{"operator": "AND", "nodes": [node(crit()), node(crit(LINUX, vulnerable=False))]},
                                {"nodes": [node(crit(versionEndExcluding="9.6"))]}])
    result = Matcher(store).match(PORT, None, None)
    assert statuses(result) == {"CVE-2024-0001": "vulnerable"}
    assert result.findings[0].evidence == f"{SSH} < 9.6"


def test_exact_criteria_and_the_update_field(tmp_path: Path) -> None:
    store = store_of(tmp_path, [{"nodes": [node(crit("cpe:2.3:a:openbsd:openssh:9.2:p1:*:*:*:*:*:*"))]}],
                     [{"nodes": [node(crit("cpe:2.3:a:openbsd:openssh:9.2:-:*:*:*:*:*:*"))]}],
                     [{"nodes": [node(crit("cpe:2.3:a:openbsd:openssh:9.2:p2:*:*:*:*:*:*"))]}],
                     [{"nodes": [node(crit("cpe:2.3:a:openbsd:openssh:9.2p1:*:*:*:*:*:*:*"))]}],
                     [{"nodes": [node(crit("cpe:2.3:a:openbsd:openssh:-:*:*:*:*:*:*:*"))]}])
    assert statuses(Matcher(store).match(PORT, None, None)) == {"CVE-2024-0001": "vulnerable",
                                                                 "CVE-2024-0004": "vulnerable"}


@pytest.mark.parametrize(("cpe", "note"), [
    (None, "no CPE name: no CVE can be matched"),
    ("", "no CPE name: no CVE can be matched"),
    ("OpenSSH 9.2p1", "not a CPE 2.3 name: no CVE can be matched"),
    ("cpe:2.3:a:openbsd:openssh:*:*:*:*:*:*:*:*", "version unknown: no CVE can be matched"),
    ("cpe:2.3:a:openbsd:openssh:-:*:*:*:*:*:*:*", "version unknown: no CVE can be matched"),
])
def test_nothing_to_match_says_why(lab_cves: CveStore, cpe: str | None, note: str) -> None:
    assert Matcher(lab_cves).match(cpe, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10", "Linux") == PortMatch((), note)


def test_a_version_that_cannot_be_compared_says_so(lab_cves: CveStore) -> None:
    result = Matcher(lab_cves).match("cpe:2.3:a:openbsd:openssh:snapshot:*:*:*:*:*:*:*", None, None)
    assert result.findings == ()
    assert result.note is not None and result.note.startswith("version snapshot could not be compared with ")


def test_a_rejected_record_is_never_matched(lab_cves: CveStore) -> None:
    assert lab_cves.record("CVE-2099-0003") is not None
    found = Matcher(lab_cves).match(PORT, None, "Linux").findings
    assert "CVE-2099-0003" not in {f.id for f in found}


def test_a_product_nvd_knows_by_several_names(lab_cves: CveStore) -> None:
    for name in ("f5:nginx", "nginx:nginx", "f5:nginx_open_source", "igor_sysoev:nginx"):
        found = Matcher(lab_cves).match(f"cpe:2.3:a:{name}:1.22.1:*:*:*:*:*:*:*", None, None).findings
        assert {f.id for f in found} == {"CVE-2023-44487", "CVE-2024-7347", "CVE-2025-23419", "CVE-2099-0006"}


@pytest.mark.parametrize(("port", "criterion"), [
    ("cpe:2.3:a:redis:redis:7.0.15:*:*:*:*:*:*:*", "cpe:2.3:a:redislabs:redis:*:*:*:*:*:*:*:*"),
    ("cpe:2.3:a:vsftpd:vsftpd:2.3.4:*:*:*:*:*:*:*", "cpe:2.3:a:beasts:vsftpd:*:*:*:*:*:*:*:*"),
    ("cpe:2.3:a:beasts:vsftpd:2.3.4:*:*:*:*:*:*:*", "cpe:2.3:a:vsftpd_project:vsftpd:*:*:*:*:*:*:*:*"),
    ("cpe:2.3:a:oracle:mysql:5.1.2:*:*:*:*:*:*:*", "cpe:2.3:a:mysql:mysql:*:*:*:*:*:*:*:*"),
])
def test_older_vendor_names_of_a_product_are_matched(tmp_path: Path, port: str, criterion: str) -> None:
    store = store_of(tmp_path, [{"nodes": [node(crit(criterion, versionEndExcluding="99"))]}])
    assert statuses(Matcher(store).match(port, None, None)) == {"CVE-2024-0001": "vulnerable"}


def test_mariadb_is_not_mysql(tmp_path: Path) -> None:
    store = store_of(tmp_path, [{"nodes": [node(crit("cpe:2.3:a:oracle:mysql:*:*:*:*:*:*:*:*"))]}])
    assert Matcher(store).match("cpe:2.3:a:mariadb:mariadb:10.11.19:*:*:*:*:*:*:*", None, None).findings == ()


_TEXT = st.one_of(st.text(max_size=200), st.text(alphabet="cpe:2.3aoh*-\\.0123456789p", max_size=80),
                  st.builds(lambda v, u: f"cpe:2.3:a:openbsd:openssh:{v}:{u}:*:*:*:*:*:*",
                            st.text(max_size=20), st.text(max_size=8)))


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_TEXT, st.one_of(st.none(), st.text(max_size=300),
                        st.builds("SSH-2.0-OpenSSH_9.2p1 Debian-{}".format, st.text(max_size=30))),
       st.one_of(st.none(), st.text(max_size=20)))
def test_never_raises(lab_cves: CveStore, cpe: str, banner: str | None, os_name: str | None) -> None:
    result = Matcher(lab_cves).match(cpe, banner, os_name)
    assert isinstance(result, PortMatch)


def test_a_debian_build_with_the_fix_is_fixed_whatever_the_platform(tmp_path: Path) -> None:
    store = store_of(tmp_path, [{"operator": "AND", "nodes": [node(crit()), node(crit(LINUX, vulnerable=False))]}])
    store.import_tracker(nvd_json.write(tmp_path / "tracker.json", nvd_json.tracker(
        ("openssh", "CVE-2024-0001", "bookworm", "resolved", "1:9.2p1-2+deb12u3"))))
    banner = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10"
    fixed = Matcher(store).match(PORT, banner, None).findings[0]
    assert (fixed.status, fixed.fixed_version) == ("fixed_by_distribution", "1:9.2p1-2+deb12u3")
    older = Matcher(store).match(PORT, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u2", None).findings[0]
    assert older.status == "needs_platform" and "later than the running 1:9.2p1-2+deb12u2" in older.evidence
