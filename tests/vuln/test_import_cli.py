"""`netscand cve import|status` run as a user would: counts on success, and every error one line
on stderr with exit 1, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from netscand.vuln.store import CveStore
from tests.vuln.nvd_json import cve, feed, tracker, write


def netscand(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netscand", "cve", *map(str, args)],
                          check=False, capture_output=True, text=True, timeout=60)


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert (done.returncode, done.stdout) == (1, ""), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr.rstrip("\n")


def test_import_reports_counts_and_status_shows_them(tmp_path: Path) -> None:
    db = tmp_path / "cve.db"
    feeds = [write(tmp_path / "nvd-2024.json.gz", feed(cve(), cve("CVE-2024-0002")), gzipped=True),
             write(tmp_path / "CVE-2024-0003.json", {"cve": cve("CVE-2024-0003")})]
    debian = write(tmp_path / "tracker.json", tracker(("openssh", "CVE-2024-6387", "bookworm", "open", None)))
    done = netscand("import", "--db", db, *feeds, "--debian-tracker", debian)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "nvd: 3 records read from 2 files, 3 new or updated; 3 records in all",
        "debian-tracker: 1 package/CVE entries (replacing the previous ones)"]
    text = netscand("status", "--db", db).stdout.splitlines()
    assert text[0].startswith(f"CVE data in {db}, updated ") and text[0].endswith("(0 min ago)")
    assert text[2].split()[:5] == ["nvd", "3", "records", "newest", "2024-09-01T00:00:00.000"]
    status = json.loads(netscand("status", "--db", db, "--json").stdout)
    assert status["loaded"] and [s["name"] for s in status["sources"]] == ["debian-tracker", "nvd"]


def test_status_of_an_empty_database_says_how_to_load_one(tmp_path: Path) -> None:
    CveStore(tmp_path / "cve.db")
    done = netscand("status", "--db", tmp_path / "cve.db")
    assert done.stdout == (f"no CVE data in {tmp_path / 'cve.db'}: run `netscand cve sync`, "
                           "or `netscand cve import FILE...`\n")


def test_status_of_a_missing_database_makes_no_file(tmp_path: Path) -> None:
    typo = tmp_path / "cev.db"
    assert _one_line_error(netscand("status", "--db", typo)) == (
        f"netscand: cve status: no CVE database at {typo}: run `netscand cve sync`, or `netscand cve import FILE...`")
    assert not typo.exists()


@pytest.mark.parametrize("content, expected", [
    (feed(cve(), cve("CVE-2024-0002", configurations=[{"nodes": ["x"]}])),
     "nvd-2024.json: CVE-2024-0002: configurations[0].nodes[0]: Expected an object, got a string"),
    (feed(cve("CVE-2024-1")), 'nvd-2024.json: CVE-2024-1: id: expected a CVE id such as CVE-2024-6387, got "CVE-2024-1"'),
    ([1, 2], "nvd-2024.json: expected a JSON object (an NVD feed or CVE record)"),
])
def test_a_refused_file_is_one_line_and_the_database_keeps_what_it_had(
        tmp_path: Path, content: object, expected: str) -> None:
    db = tmp_path / "cve.db"
    assert netscand("import", "--db", db, write(tmp_path / "first.json", feed(cve("CVE-2023-0001")))).returncode == 0
    bad = write(tmp_path / "nvd-2024.json", content)
    error = _one_line_error(netscand("import", "--db", db, write(tmp_path / "ok.json", feed(cve())), bad))
    assert error == f"netscand: cve import: {tmp_path}/{expected}"
    store = CveStore(db)
    assert store.record("CVE-2023-0001") is not None and store.record("CVE-2024-6387") is None


@pytest.mark.parametrize("args, expected", [
    ((), "netscand: cve import: name NVD JSON files to import, or --debian-tracker FILE"),
    (("missing.json",), "netscand: cve import: missing.json: cannot read: No such file or directory"),
    (("--debian-tracker", "gone.json"), "netscand: cve import: gone.json: cannot read: No such file or directory"),
])
def test_a_usage_error_is_one_line(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    assert _one_line_error(netscand("import", "--db", tmp_path / "cve.db", *args)) == expected


def test_a_bad_tracker_file_is_one_line(tmp_path: Path) -> None:
    bad = write(tmp_path / "tracker.json", {"openssh": {"CVE-2024-6387": {"releases": {"bookworm": {"status": 1}}}}})
    assert _one_line_error(netscand("import", "--db", tmp_path / "cve.db", "--debian-tracker", bad)) == (
        f"netscand: cve import: {bad}: openssh: CVE-2024-6387: releases.bookworm.status: "
        "Expected a string, got an integer")


def test_a_database_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "no" / "cve.db"
    assert _one_line_error(netscand("import", "--db", db, "--debian-tracker", write(tmp_path / "t.json", {}))) == (
        f"netscand: cve import: cannot prepare {db}: unable to open database file")


def test_the_config_files_cve_section_names_the_sync_source(tmp_path: Path) -> None:
    conf = tmp_path / "netscand.toml"
    conf.write_text('[cve]\nfeed_url = "http://127.0.0.1:9/feeds/"\ntracker_url = "http://127.0.0.1:9/t"\n')
    error = _one_line_error(netscand("sync", "--config", conf, "--db", tmp_path / "cve.db"))
    assert error.startswith("netscand: cve sync: cannot fetch http://127.0.0.1:9/feeds/nvdcve-2.0-2002.json.gz: ")
    conf.write_text('[cve]\nfeed_url = "ftp://mirror/"\n')
    assert _one_line_error(netscand("sync", "--config", conf, "--db", tmp_path / "cve.db")) == (
        f'netscand: cve sync: {conf}: cve.feed_url: expected an http:// or https:// URL, got "ftp://mirror/"')
