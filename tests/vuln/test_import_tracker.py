"""The Debian Security Tracker reader: its rows, and every shape error named by package and CVE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netscand.vuln import tracker
from netscand.vuln.errors import ImportRefused
from tests.vuln.nvd_json import tracker as tracker_json
from tests.vuln.nvd_json import write

FIXED = "1:9.2p1-2+deb12u3"


def test_every_release_of_every_cve_of_every_package_is_a_row(tmp_path: Path) -> None:
    data = tracker_json(("openssh", "CVE-2024-6387", "bookworm", "resolved", FIXED),
                        ("openssh", "CVE-2024-6387", "trixie", "resolved", "1:9.7p1-7"),
                        ("openssh", "CVE-2023-51767", "bookworm", "open", None),
                        ("nginx", "CVE-2023-44487", "bookworm", "undetermined", None))
    data["openssh"]["TEMP-0000000-7E6B2C"] = {"releases": {"bookworm": {"status": "open"}}}
    assert tracker.read(write(tmp_path / "tracker.json.gz", data, gzipped=True)) == [
        ("openssh", "CVE-2024-6387", "bookworm", "resolved", FIXED),
        ("openssh", "CVE-2024-6387", "trixie", "resolved", "1:9.7p1-7"),
        ("openssh", "CVE-2023-51767", "bookworm", "open", None),
        ("nginx", "CVE-2023-44487", "bookworm", "undetermined", None)]


def _entry(**release: Any) -> dict[str, Any]:
    return {"openssh": {"CVE-2024-6387": {"releases": {"bookworm": release}}}}


@pytest.mark.parametrize("data, record, reason", [
    ([], None, "expected a JSON object: source package -> CVE -> entry"),
    ({"openssh": []}, "openssh", "Expected an object, got an array"),
    ({"openssh": {"CVE-2024-6387": "fixed"}}, "openssh: CVE-2024-6387", "Expected an object, got a string"),
    ({"openssh": {"CVE-2024-6387": {"releases": []}}}, "openssh: CVE-2024-6387",
     "releases: Expected an object, got an array"),
    ({"openssh": {"CVE-2024-6387": {"releases": {"bookworm": "resolved"}}}}, "openssh: CVE-2024-6387",
     "releases.bookworm: Expected an object, got a string"),
    (_entry(fixed_version=FIXED), "openssh: CVE-2024-6387", 'releases.bookworm: missing "status"'),
    (_entry(status=1), "openssh: CVE-2024-6387", "releases.bookworm.status: Expected a string, got an integer"),
    (_entry(status="resolved", fixed_version=9.2), "openssh: CVE-2024-6387",
     "releases.bookworm.fixed_version: Expected a string or null, got a number"),
    ({"open\nssh": []}, '"open\\nssh"', "Expected an object, got an array"),
])
def test_every_shape_error_names_the_package_and_the_cve(
        tmp_path: Path, data: Any, record: str | None, reason: str) -> None:
    path = write(tmp_path / "tracker.json", data)
    with pytest.raises(ImportRefused) as refused:
        tracker.read(path)
    assert (refused.value.file, refused.value.record, refused.value.reason) == (str(path), record, reason)


@pytest.mark.parametrize("content, reason", [(b'{"openssh": {', "not JSON: Input data was truncated"),
                                             (b"", "not JSON: Input data was truncated")])
def test_a_file_that_is_not_json_is_refused(tmp_path: Path, content: bytes, reason: str) -> None:
    with pytest.raises(ImportRefused) as refused:
        tracker.read(write(tmp_path / "tracker.json", content))
    assert refused.value.reason == reason


@pytest.mark.parametrize("content", [b'{"openssh": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                                     b'{"openssh": {"CVE-2024-6387": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"])
def test_json_nested_too_deeply_is_refused(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(ImportRefused) as refused:
        tracker.read(write(tmp_path / "tracker.json", content))
    assert (refused.value.record, refused.value.reason) == (None, "nested too deeply")
