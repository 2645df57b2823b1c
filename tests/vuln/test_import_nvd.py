"""The NVD JSON 2.0 reader: what a record becomes, every form NVD delivers records in, and every
shape error refused with the file, the record and the reason."""

from __future__ import annotations

import gzip
import json
import re
import resource
from pathlib import Path
from typing import Any

import pytest

from netscand.vuln import nvd
from netscand.vuln.errors import ImportRefused
from netscand.vuln.records import Configuration, CpeMatch, CveRecord, Node
from tests.vuln.nvd_json import OPENSSH, cve, feed, write

V40: dict[str, Any] = {"source": "cna@vuldb.com", "type": "Secondary",
       "cvssData": {"version": "4.0", "vectorString": "CVSS:4.0/AV:N", "baseScore": 9.3, "baseSeverity": "CRITICAL"}}
V31_PRIMARY: dict[str, Any] = {"source": "nvd@nist.gov", "type": "Primary",
               "cvssData": {"version": "3.1", "baseScore": 9.8, "baseSeverity": "CRITICAL"}}
V2: dict[str, Any] = {"source": "nvd@nist.gov", "type": "Primary", "baseSeverity": "MEDIUM",
      "cvssData": {"version": "2.0", "vectorString": "AV:N/AC:L/Au:N/C:N/I:N/A:P", "baseScore": 5.0}}


def test_a_record_keeps_what_matching_and_reporting_need(tmp_path: Path) -> None:
    [record] = nvd.read(write(tmp_path / "f.json", feed(cve())))
    assert record == CveRecord(
        id="CVE-2024-6387", published="2024-07-01T13:15:06.467", modified="2024-09-01T00:00:00.000",
        status="Analyzed", summary="A signal handler race condition in sshd.", cvss=8.1, cvss_version="3.1",
        severity="high", configurations=(Configuration(nodes=(Node(matches=(
            CpeMatch(OPENSSH, start_including="8.5", end_excluding="9.8"),)),)),))


@pytest.mark.parametrize("metrics, expected", [
    ({"cvssMetricV31": [{**V31_PRIMARY, "type": "Secondary", "cvssData": {"baseScore": 7.5, "baseSeverity": "HIGH"}},
                        V31_PRIMARY]}, (9.8, "3.1", "critical")),  # the NVD's own (Primary) score
    ({"cvssMetricV40": [V40], "cvssMetricV31": [V31_PRIMARY]}, (9.3, "4.0", "critical")),  # v4.0 first
    ({"cvssMetricV30": [{**V31_PRIMARY, "cvssData": {"version": "3.0", "baseScore": 7.5, "baseSeverity": "HIGH"}}],
      "cvssMetricV2": [V2]}, (7.5, "3.0", "high")),  # v3.0 after v3.1, before v2
    ({"cvssMetricV2": [V2]}, (5.0, "2.0", "medium")),  # v2's severity is beside its cvssData
    ({}, (None, None, None)),
])
def test_the_score_is_the_newest_cvss_version_preferring_the_primary_source(
        tmp_path: Path, metrics: dict[str, Any], expected: tuple[Any, ...]) -> None:
    [record] = nvd.read(write(tmp_path / "f.json", feed(cve(metrics=metrics))))
    assert (record.cvss, record.cvss_version, record.severity) == expected


def test_and_configurations_keep_operator_negate_and_every_range_bound(tmp_path: Path) -> None:
    configurations = [{"operator": "AND", "nodes": [
        {"operator": "OR", "negate": False, "cpeMatch": [
            {"vulnerable": True, "criteria": "cpe:2.3:a:isc:bind:*:*:*:*:*:*:*:*",
             "versionStartExcluding": "9.0", "versionEndIncluding": "9.18.1"}]},
        {"operator": "OR", "negate": True, "cpeMatch": [
            {"vulnerable": False, "criteria": "cpe:2.3:o:debian:debian_linux:12.0:*:*:*:*:*:*:*"}]}]}]
    [record] = nvd.read(write(tmp_path / "f.json", feed(cve(configurations=configurations))))
    assert record.configurations == (Configuration(operator="AND", nodes=(
        Node(matches=(CpeMatch("cpe:2.3:a:isc:bind:*:*:*:*:*:*:*:*", start_excluding="9.0", end_including="9.18.1"),)),
        Node(negate=True, matches=(CpeMatch("cpe:2.3:o:debian:debian_linux:12.0:*:*:*:*:*:*:*", vulnerable=False),)),
    )),)


def test_a_rejected_record_is_read_with_its_status(tmp_path: Path) -> None:
    rejected = cve("CVE-2023-0001", vulnStatus="Rejected", metrics={}, configurations=[],
                   descriptions=[{"lang": "en", "value": "Rejected reason: duplicate of CVE-2023-0002."}])
    [record] = nvd.read(write(tmp_path / "f.json", feed(rejected)))
    assert (record.status, record.configurations, record.cvss) == ("Rejected", (), None)


@pytest.mark.parametrize("form", ["feed", "gzip feed", "api item", "bare record"])
def test_every_form_nvd_delivers_reads_the_same(tmp_path: Path, form: str) -> None:
    data = {"feed": feed(cve()), "gzip feed": feed(cve()), "api item": {"cve": cve()}, "bare record": cve()}[form]
    [record] = nvd.read(write(tmp_path / "f", data, gzipped=form == "gzip feed"))
    assert record.id == "CVE-2024-6387" and record.cvss == 8.1


def test_a_file_opened_already_is_read_and_named_by_its_path(tmp_path: Path) -> None:
    path = write(tmp_path / "nvd.json", feed(cve(), cve("CVE-2024-0002")))
    with path.open("rb") as f:
        assert [r.id for r in nvd.read(f)] == ["CVE-2024-6387", "CVE-2024-0002"]
    with write(tmp_path / "bad.json", b"{").open("rb") as f, pytest.raises(ImportRefused, match="bad.json: not JSON"):
        nvd.read(f)


def _node(value: Any) -> dict[str, Any]:
    return cve(configurations=[{"nodes": [value]}])


def _match(**changes: Any) -> dict[str, Any]:
    return _node({"operator": "OR", "negate": False, "cpeMatch": [{"vulnerable": True, "criteria": OPENSSH, **changes}]})


def _cvss(**changes: Any) -> dict[str, Any]:
    return cve(metrics={"cvssMetricV31": [{**V31_PRIMARY, "cvssData": {**V31_PRIMARY["cvssData"], **changes}}]})


# (record, the record the error names, the reason)
SHAPE_ERRORS: list[tuple[Any, str, str]] = [
    ("a string", "vulnerabilities[0]", "Expected an object, got a string"),
    ({"id": "CVE-2024-6387"}, "vulnerabilities[0]", 'missing "cve"'),
    ({"cve": []}, "vulnerabilities[0]", "cve: Expected an object, got an array"),
    ({"cve": {**cve(), "id": 2024}}, "vulnerabilities[0]", "id: Expected a string, got an integer"),
    ({"cve": {k: v for k, v in cve().items() if k != "id"}}, "vulnerabilities[0]", 'missing "id"'),
    ({"cve": cve("CVE-24")}, "CVE-24", 'id: expected a CVE id such as CVE-2024-6387, got "CVE-24"'),
    ({"cve": cve("CVE-2024-6387\n")}, '"CVE-2024-6387\\n"', "id: expected a CVE id"),
    ({"cve": cve(published="2024-13-01T00:00:00.000")}, "CVE-2024-6387",
     'published: expected a date and time such as 2024-07-01T13:15:06.467, got "2024-13-01T00:00:00.000"'),
    ({"cve": cve(modified="yesterday")}, "CVE-2024-6387", 'lastModified: expected a date and time'),
    ({"cve": {k: v for k, v in cve().items() if k != "lastModified"}}, "CVE-2024-6387", 'missing "lastModified"'),
    ({"cve": cve(vulnStatus=None)}, "CVE-2024-6387", "vulnStatus: Expected a string, got null"),
    ({"cve": cve(descriptions={"en": "x"})}, "CVE-2024-6387", "descriptions: Expected an array, got an object"),
    ({"cve": cve(descriptions=[{"lang": "en"}])}, "CVE-2024-6387", 'descriptions[0]: missing "value"'),
    ({"cve": cve(metrics=[])}, "CVE-2024-6387", "metrics: Expected an object, got an array"),
    ({"cve": _cvss(baseScore=10.1)}, "CVE-2024-6387", "metrics.cvssMetricV31[0].cvssData.baseScore: Expected a number <= 10.0"),
    ({"cve": _cvss(baseScore=-1)}, "CVE-2024-6387", "baseScore: Expected a number >= 0.0"),
    ({"cve": _cvss(baseScore="9.8")}, "CVE-2024-6387", "baseScore: Expected a number, got a string"),
    ({"cve": _cvss(baseSeverity="SEVERE")}, "CVE-2024-6387", "cvssData.baseSeverity: Invalid enum value 'SEVERE'"),
    ({"cve": cve(configurations={})}, "CVE-2024-6387", "configurations: Expected an array, got an object"),
    ({"cve": _node("a string")}, "CVE-2024-6387", "configurations[0].nodes[0]: Expected an object, got a string"),
    ({"cve": _node({"operator": "XOR", "cpeMatch": []})}, "CVE-2024-6387",
     "configurations[0].nodes[0].operator: Invalid enum value 'XOR'"),
    ({"cve": _node({"negate": "yes", "cpeMatch": []})}, "CVE-2024-6387",
     "configurations[0].nodes[0].negate: Expected a boolean, got a string"),
    ({"cve": _node({"cpeMatch": {}})}, "CVE-2024-6387", "nodes[0].cpeMatch: Expected an array, got an object"),
    ({"cve": _match(criteria="cpe:/a:openbsd:openssh:9.2")}, "CVE-2024-6387",
     ('cpeMatch[0].criteria: expected a CPE 2.3 string such as cpe:2.3:a:openbsd:openssh:9.2:p1:*:*:*:*:*:*, '
     'got "cpe:/a:openbsd:openssh:9.2"')),
    ({"cve": _match(criteria="cpe:2.3:a:openbsd:openssh:*:*:*:*:*:*:*")}, "CVE-2024-6387",  # ten parts
     "cpeMatch[0].criteria: expected a CPE 2.3 string"),
    ({"cve": _match(criteria=None)}, "CVE-2024-6387", "cpeMatch[0].criteria: Expected a string, got null"),
    ({"cve": _match(vulnerable="true")}, "CVE-2024-6387", "cpeMatch[0].vulnerable: Expected a boolean, got a string"),
    ({"cve": _match(versionEndExcluding=9.8)}, "CVE-2024-6387",
     "cpeMatch[0].versionEndExcluding: Expected a string or null, got a number"),
]


@pytest.mark.parametrize("item, record, reason", SHAPE_ERRORS)
def test_every_shape_error_names_the_file_the_record_and_the_path(
        tmp_path: Path, item: Any, record: str, reason: str) -> None:
    path = write(tmp_path / "nvd-2024.json", {"vulnerabilities": [item]})
    with pytest.raises(ImportRefused) as refused:
        nvd.read(path)
    assert (refused.value.file, refused.value.record) == (str(path), record)
    assert refused.value.reason.startswith(reason) or reason in refused.value.reason
    assert "\n" not in str(refused.value)


def test_the_bad_record_of_a_feed_is_named_among_good_ones(tmp_path: Path) -> None:
    path = write(tmp_path / "nvd-2024.json", feed(cve("CVE-2024-0001"), _node(7) | {"id": "CVE-2024-0002"}))
    with pytest.raises(ImportRefused) as refused:
        nvd.read(path)
    assert str(refused.value) == (f"{path}: CVE-2024-0002: configurations[0].nodes[0]: "
                                  "Expected an object, got an integer")


@pytest.mark.parametrize("content, reason", [
    (b"", "not JSON: Input data was truncated"),
    (b'{"vulnerabilities": [{"cve": {"id": "CVE-2024-0001"', "not JSON: Input data was truncated"),
    (b"<html>503 Service Unavailable</html>", "not JSON: JSON is malformed"),
    (b"[]", "expected a JSON object (an NVD feed or CVE record)"),
    (b'{"resultsPerPage": 0}', 'neither an NVD feed ("vulnerabilities") nor a CVE record ("cve")'),
    (b'{"vulnerabilities": {"cve": {}}}', "vulnerabilities: Expected an array, got an object"),
    (gzip.compress(json.dumps(feed(cve())).encode())[:-12], "truncated gzip file"),
    (b"\x1f\x8b" + b"\x00" * 40, "corrupt gzip file"),
    (gzip.compress(b"{\"vulnerabilities\": [1, 2"), "not JSON: Input data was truncated"),
])
def test_a_file_that_is_not_an_nvd_file_is_refused_whole(tmp_path: Path, content: bytes, reason: str) -> None:
    path = write(tmp_path / "nvd.json.gz", content)
    with pytest.raises(ImportRefused) as refused:
        nvd.read(path)
    assert refused.value.record is None and refused.value.reason.startswith(reason), refused.value.reason


def test_a_missing_file_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ImportRefused, match=r"missing.json: cannot read: No such file or directory$"):
        nvd.read(tmp_path / "missing.json")


def test_a_file_beyond_the_bound_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("netscand.vuln.inputs.MAX_BYTES", 1000)  # a 1 GB file is too slow for a unit test
    path = write(tmp_path / "bomb.json.gz", b" " * 5000 + json.dumps(feed()).encode(), gzipped=True)
    with pytest.raises(ImportRefused, match="bomb.json.gz: larger than 0 MB"):
        nvd.read(path)


def test_a_small_file_is_read_without_reserving_the_bound(tmp_path: Path) -> None:
    """f.read(MAX_BYTES + 1) reserved the whole bound up front; chunks reserve what is there."""
    path = write(tmp_path / "small.json", feed(cve()))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    in_use = int(re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text())[1]) << 10
    resource.setrlimit(resource.RLIMIT_AS, (in_use + (512 << 20), hard))  # far below the 1 GiB bound
    try:
        assert len(nvd.read(path)) == 1
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("content", [
    b'{"vulnerabilities": ' + NESTED + b"}",
    b'{"vulnerabilities": [{"cve": ' + NESTED + b"}]}",
    b'{"cve": {"id": "CVE-2024-0001", "descriptions": ' + NESTED + b"}}",
])
def test_json_nested_too_deeply_is_refused(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(ImportRefused) as refused:
        nvd.read(write(tmp_path / "deep.json", content))
    assert (refused.value.record, refused.value.reason) == (None, "nested too deeply")


def test_invalid_utf8_in_a_record_is_refused_by_its_id(tmp_path: Path) -> None:
    text = json.dumps(feed(cve("CVE-2024-0001"), cve("CVE-2024-0002", summary="X"))).encode()
    text = text.replace(b"A signal handler", b"A \xff\xfe handler")
    with pytest.raises(ImportRefused) as refused:
        nvd.read(write(tmp_path / "utf8.json", text))
    assert (refused.value.record, refused.value.reason) == ("CVE-2024-0001", "not JSON: Invalid UTF-8 encoded string")
