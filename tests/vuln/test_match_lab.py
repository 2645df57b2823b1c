"""The matcher on the fixture records, for what service detection reports of the lab's daemons.

EXPECTED is written by hand from tests/vuln/fixtures (nvd-lab.json's configurations, and the
bookworm fixed versions in debian-tracker.json), not computed by the code under test. The lab's
CVE test uses it too: per daemon, the CPE and banner the probes report, the OS guess, and
CVE id -> (status, fixed_version).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from netscand.lab import servers
from netscand.profiling.services.probes import ftp, http, mysql, redis, ssh
from netscand.vuln import cpe
from netscand.vuln.match import Matcher
from netscand.vuln.store import CveStore

FBD, VULN, PLATFORM = "fixed_by_distribution", "vulnerable", "needs_platform"
OPENSSH = "cpe:2.3:a:openbsd:openssh:9.2:p1:*:*:*:*:*:*"
SSH_BANNER = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10"
DEB = "1:9.2p1-2+deb12u"


class Row(NamedTuple):
    cpe: str
    banner: str | None
    os_name: str | None
    findings: dict[str, tuple[str, str | None]]  # CVE id -> (status, fixed_version)
    note: str | None = None


# The lab's daemons as the probes report them (Debian 12 builds, lab/servers.py).
EXPECTED: dict[str, Row] = {
    "openssh": Row(OPENSSH, SSH_BANNER, "Linux", {
        "CVE-2023-28531": (FBD, DEB + "2"), "CVE-2023-38408": (FBD, DEB + "1"),
        "CVE-2023-48795": (FBD, DEB + "2"), "CVE-2023-51384": (FBD, DEB + "2"),
        "CVE-2023-51385": (FBD, DEB + "2"), "CVE-2024-6387": (FBD, DEB + "3"),
        "CVE-2025-26465": (FBD, DEB + "5"), "CVE-2025-32728": (FBD, DEB + "6"),
        "CVE-2099-0001": (VULN, None),  # AND linux_kernel, OS Linux; no tracker entry
        "CVE-2099-0002": (PLATFORM, None),  # AND windows, OS Linux
    }),
    "nginx": Row("cpe:2.3:a:f5:nginx:1.22.1:*:*:*:*:*:*:*", "HTTP/1.1 200 OK\nServer: nginx/1.22.1", "Linux", {
        "CVE-2023-44487": (VULN, None), "CVE-2024-7347": (VULN, None), "CVE-2025-23419": (VULN, None),
        "CVE-2099-0006": (VULN, None),  # nginx has no build in its banner: nothing to ask the tracker
    }),
    "redis": Row("cpe:2.3:a:redis:redis:7.0.15:*:*:*:*:*:*:*", None, "Linux", {
        "CVE-2024-31228": (VULN, None), "CVE-2024-31449": (VULN, None), "CVE-2024-46981": (VULN, None),
        "CVE-2025-21605": (VULN, None), "CVE-2025-49844": (VULN, None), "CVE-2099-0004": (VULN, None),
    }),
    "mariadb": Row("cpe:2.3:a:mariadb:mariadb:10.11.19:*:*:*:*:*:*:*", "5.5.5-10.11.19-MariaDB-0+deb12u1", "Linux", {
        "CVE-2023-52970": (FBD, "1:10.11.13-0+deb12u1"),
    }),
    "dnsmasq": Row("cpe:2.3:a:thekelleys:dnsmasq:2.90:*:*:*:*:*:*:*", None, "Linux", {}),  # all fixed in 2.90
    "vsftpd": Row("cpe:2.3:a:beasts:vsftpd:3.0.3:*:*:*:*:*:*:*", "220 (vsFTPd 3.0.3)", "Linux", {
        "CVE-2021-30047": (VULN, None),
    }),
    "snmpd": Row("cpe:2.3:a:net-snmp:net-snmp:*:*:*:*:*:*:*:*", None, "Linux", {},
                 "version unknown: no CVE can be matched"),
}

# Other builds and versions of the same products: boundaries and the tracker's other answers.
VARIANTS: dict[str, Row] = {
    "openssh, no OS guess": Row(OPENSSH, SSH_BANNER, None, {
        **{k: v for k, v in EXPECTED["openssh"].findings.items() if not k.startswith("CVE-2099")},
        "CVE-2099-0001": (PLATFORM, None), "CVE-2099-0002": (PLATFORM, None)}),
    "openssh on Windows": Row(OPENSSH, SSH_BANNER, "Windows", {
        **{k: v for k, v in EXPECTED["openssh"].findings.items() if not k.startswith("CVE-2099")},
        "CVE-2099-0001": (PLATFORM, None), "CVE-2099-0002": (VULN, None)}),
    "openssh, an older bookworm build": Row(OPENSSH, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u2", "Linux", {
        "CVE-2023-28531": (FBD, DEB + "2"), "CVE-2023-38408": (FBD, DEB + "1"),
        "CVE-2023-48795": (FBD, DEB + "2"), "CVE-2023-51384": (FBD, DEB + "2"),
        "CVE-2023-51385": (FBD, DEB + "2"), "CVE-2024-6387": (VULN, None),
        "CVE-2025-26465": (VULN, None), "CVE-2025-32728": (VULN, None),
        "CVE-2099-0001": (VULN, None), "CVE-2099-0002": (PLATFORM, None)}),
    "openssh, upstream build": Row(OPENSSH, "SSH-2.0-OpenSSH_9.2p1", "Linux", {
        "CVE-2023-28531": (VULN, None), "CVE-2023-38408": (VULN, None), "CVE-2023-48795": (VULN, None),
        "CVE-2023-51384": (VULN, None), "CVE-2023-51385": (VULN, None), "CVE-2024-6387": (VULN, None),
        "CVE-2025-26465": (VULN, None), "CVE-2025-32728": (VULN, None),
        "CVE-2099-0001": (VULN, None), "CVE-2099-0002": (PLATFORM, None)}),
    "openssh 9.1p1": Row("cpe:2.3:a:openbsd:openssh:9.1:p1:*:*:*:*:*:*", "SSH-2.0-OpenSSH_9.1p1", "Linux", {
        "CVE-2023-25136": (VULN, None), "CVE-2023-28531": (VULN, None), "CVE-2023-38408": (VULN, None),
        "CVE-2023-48795": (VULN, None), "CVE-2023-51384": (VULN, None), "CVE-2023-51385": (VULN, None),
        "CVE-2024-6387": (VULN, None), "CVE-2025-26465": (VULN, None), "CVE-2025-32728": (VULN, None),
        "CVE-2099-0001": (VULN, None)}),
    "openssh 9.8p1": Row("cpe:2.3:a:openbsd:openssh:9.8:p1:*:*:*:*:*:*", "SSH-2.0-OpenSSH_9.8p1", "Linux", {
        "CVE-2025-26465": (VULN, None), "CVE-2025-32728": (VULN, None), "CVE-2099-0001": (VULN, None)}),
    "nginx 1.22.0": Row("cpe:2.3:a:f5:nginx:1.22.0:*:*:*:*:*:*:*", None, None, {
        "CVE-2022-41741": (VULN, None), "CVE-2023-44487": (VULN, None), "CVE-2024-7347": (VULN, None),
        "CVE-2025-23419": (VULN, None)}),
    "nginx 1.22.2": Row("cpe:2.3:a:f5:nginx:1.22.2:*:*:*:*:*:*:*", None, None, {
        "CVE-2023-44487": (VULN, None), "CVE-2024-7347": (VULN, None), "CVE-2025-23419": (VULN, None),
        "CVE-2099-0005": (VULN, None)}),
    "redis 7.0.14": Row("cpe:2.3:a:redis:redis:7.0.14:*:*:*:*:*:*:*", None, None, {
        "CVE-2023-41056": (VULN, None), "CVE-2024-31228": (VULN, None), "CVE-2024-31449": (VULN, None),
        "CVE-2024-46981": (VULN, None), "CVE-2025-21605": (VULN, None), "CVE-2025-49844": (VULN, None)}),
    "mariadb, MariaDB's own build": Row("cpe:2.3:a:mariadb:mariadb:10.11.19:*:*:*:*:*:*:*",
                                        "5.5.5-10.11.19-MariaDB", None, {"CVE-2023-52970": (VULN, None)}),
    "dnsmasq 2.89": Row("cpe:2.3:a:thekelleys:dnsmasq:2.89:*:*:*:*:*:*:*", None, None, {
        "CVE-2023-28450": (VULN, None), "CVE-2023-50387": (VULN, None), "CVE-2023-50868": (VULN, None)}),
    "vsftpd 3.0.2": Row("cpe:2.3:a:beasts:vsftpd:3.0.2:*:*:*:*:*:*:*", None, None, {
        "CVE-2015-1419": (VULN, None)}),
    "net-snmp 5.9.3": Row("cpe:2.3:a:net-snmp:net-snmp:5.9.3:*:*:*:*:*:*:*", None, None, {
        "CVE-2022-44792": (VULN, None)}),
    "net-snmp 5.9.4": Row("cpe:2.3:a:net-snmp:net-snmp:5.9.4:*:*:*:*:*:*:*", None, None, {}),
}


@pytest.mark.parametrize("row", [*EXPECTED.values(), *VARIANTS.values()], ids=[*EXPECTED, *VARIANTS])
def test_findings_equal_the_table(lab_cves: CveStore, row: Row) -> None:
    result = Matcher(lab_cves).match(row.cpe, row.banner, row.os_name)
    assert {f.id: (f.status, f.fixed_version) for f in result.findings} == row.findings
    assert result.note == row.note


def test_findings_come_by_cvss_then_id(lab_cves: CveStore) -> None:
    row = EXPECTED["redis"]
    result = Matcher(lab_cves).match(row.cpe, row.banner, row.os_name)
    # From the records: 9.9, 9.3 (v4.0 only), 7.5, 7.0 and 7.0 (by id), 6.5.
    assert [f.id for f in result.findings] == ["CVE-2025-49844", "CVE-2099-0004", "CVE-2025-21605",
                                              "CVE-2024-31449", "CVE-2024-46981", "CVE-2024-31228"]
    assert [(f.cvss, f.severity) for f in result.findings[:2]] == [(9.9, "critical"), (9.3, "critical")]


def test_evidence_names_the_criterion_its_range_and_the_build(lab_cves: CveStore) -> None:
    row = EXPECTED["openssh"]
    found = {f.id: f for f in Matcher(lab_cves).match(row.cpe, row.banner, row.os_name).findings}
    regression = found["CVE-2024-6387"]
    assert regression.evidence.startswith("cpe:2.3:a:openbsd:openssh:*:*:*:*:*:*:*:* >= 8.5p1, < 9.8p1; ")
    assert "1:9.2p1-2+deb12u3 (bookworm), running 1:9.2p1-2+deb12u10" in regression.evidence
    assert regression.summary.startswith("A security regression (CVE-2006-5051)")
    assert regression.published.startswith("2024-07-01T13:15:06")
    assert "needs cpe:2.3:o:microsoft:windows:-:*:*:*:*:*:*:* (OS guess: Linux)" in found["CVE-2099-0002"].evidence
    assert found["CVE-2099-0001"].evidence.endswith("Debian tracker has no bookworm entry for openssh")


def test_an_ubuntu_build_stays_vulnerable_and_says_it_was_not_checked(lab_cves: CveStore) -> None:
    result = Matcher(lab_cves).match(OPENSSH, "SSH-2.0-OpenSSH_9.2p1 Ubuntu-2ubuntu0.2", "Linux")
    regression = next(f for f in result.findings if f.id == "CVE-2024-6387")
    assert regression.status == VULN and regression.fixed_version is None
    assert "Ubuntu build 2ubuntu0.2: the Debian tracker cannot decide for it" in regression.evidence


@pytest.mark.parametrize("daemon", ["openssh", "nginx", "redis", "mariadb", "dnsmasq", "vsftpd", "snmpd"])
def test_the_table_is_for_the_versions_the_lab_runs(daemon: str) -> None:
    """The table was written for these upstream versions: another one needs a new table."""
    name = cpe.parse(EXPECTED[daemon].cpe)
    assert name is not None
    written = name.version + (name.update if name.update != cpe.ANY else "")
    running = servers.package_version(servers.DAEMONS[daemon].binary)
    assert written == (running if daemon != "snmpd" else cpe.ANY)  # snmpd never says its version


def _mysql_greeting(version: bytes) -> bytes:
    body = b"\x0a" + version + b"\x00" + b"\x01\x00\x00\x00" + b"abcdefgh\x00" + b"\xff\xf7\x08\x02\x00"
    return len(body).to_bytes(3, "little") + b"\x00" + body


@pytest.mark.parametrize(("daemon", "parse", "greeting"), [
    ("openssh", ssh.parse, b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n"),
    ("vsftpd", ftp.parse, b"220 (vsFTPd 3.0.3)\r\n"),
    ("redis", redis.parse, b"$52\r\n# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n\r\n"),
    ("mariadb", mysql.parse, _mysql_greeting(b"5.5.5-10.11.19-MariaDB-0+deb12u1")),
    ("nginx", http.parse, b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\r\n"),
])
def test_the_table_holds_what_service_detection_reports(daemon: str, parse: Any, greeting: bytes) -> None:
    info = parse(greeting)
    assert info is not None and info.cpe == EXPECTED[daemon].cpe
    assert info.banner == EXPECTED[daemon].banner
