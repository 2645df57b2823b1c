"""`netscanctl result --format` and `netscanctl export`, the installed command against the real
API: the bytes the API streams, to stdout or to a file that appears only once complete."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import netscand.cli.ctl  # noqa: F401  # first: the command modules are imported by it
from netscand.cli.export import write_whole
from tests.api.conftest import Api
from tests.api.test_exports import finished_scan

NETSCANCTL = str(Path(sys.executable).with_name("netscanctl"))
MISSING = "00000000-0000-0000-0000-000000000000"


def ctl(api: Api, *argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([NETSCANCTL, "--socket", str(api.socket_path), *argv], capture_output=True, timeout=60)


@pytest.mark.parametrize("fmt", ["nmap-xml", "csv", "jsonl"])
def test_result_format_writes_the_export_to_stdout(api: Api, unix: httpx.Client, fmt: str) -> None:
    scan_id = finished_scan(api, unix, devices=300)
    done = ctl(api, "result", scan_id, "--format", fmt)
    assert done.returncode == 0, done.stderr
    assert done.stdout == unix.get(f"/api/v1/scans/{scan_id}/result", params={"format": fmt}).content


def test_export_writes_a_file_whole(api: Api, unix: httpx.Client, tmp_path: Path) -> None:
    scan_id = finished_scan(api, unix, devices=3)
    target = tmp_path / "scan.xml"
    done = ctl(api, "export", scan_id, "--format", "nmap-xml", "-o", str(target))
    assert done.returncode == 0 and done.stdout == b"", done.stderr
    assert target.read_bytes() == unix.get(f"/api/v1/scans/{scan_id}/result", params={"format": "nmap-xml"}).content
    assert [p.name for p in tmp_path.iterdir()] == ["scan.xml"]
    assert ctl(api, "export", scan_id, "--format", "csv").stdout.startswith(b"scan_id,ip,")


def test_a_failed_export_says_why_and_leaves_no_file(api: Api, tmp_path: Path) -> None:
    target = tmp_path / "scan.csv"
    done = ctl(api, "export", MISSING, "--format", "csv", "-o", str(target))
    assert done.returncode == 1 and done.stderr.decode().startswith("netscanctl: 404 Scan not found")
    assert list(tmp_path.iterdir()) == []
    assert ctl(api, "result", MISSING, "--format", "jsonl").returncode == 1


def test_a_reader_that_stops_early_is_no_crash(api: Api, unix: httpx.Client) -> None:
    scan_id = finished_scan(api, unix, devices=600)
    done = subprocess.run(f"{NETSCANCTL} --socket {api.socket_path} result {scan_id} --format csv | head -c 100",
                          shell=True, capture_output=True, timeout=60)
    assert len(done.stdout) == 100 and b"Traceback" not in done.stderr


@pytest.mark.parametrize("where", ["missing/scan.csv", "."])
def test_an_output_that_cannot_be_written_is_one_line_and_leaves_nothing(api: Api, unix: httpx.Client,
                                                                         tmp_path: Path, where: str) -> None:
    scan_id = finished_scan(api, unix, devices=3)
    target = tmp_path / where  # a directory that does not exist; a directory
    done = ctl(api, "export", scan_id, "--format", "csv", "-o", str(target))
    assert done.returncode == 1 and b"Traceback" not in done.stderr
    assert done.stderr.decode().startswith(f"netscanctl: cannot write {target}: ")
    assert len(done.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no temporary file left beside it


def test_a_file_is_on_disk_before_it_takes_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    done: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (done.append(f"fsync {os.fstat(fd).st_size}"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (done.append("replace"), real_replace(a, b))[1])
    write_whole(tmp_path / "x.csv", lambda out: out.write(b"a,b\r\n"))
    assert done == ["fsync 5", "replace"] and (tmp_path / "x.csv").read_bytes() == b"a,b\r\n"
