"""netscanctl sites, devices and device against a real API on its Unix socket: tables for people,
--json for scripts, an API error as one line and exit 1."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from netscand.cli import ctl
from netscand.engine.shm import Shared
from netscand.scan.dispatch import Dispatcher
from netscand.store import Store
from netscand.store.compare import Covered
from netscand.store.inventory import merge
from tests.api.conftest import Api, ApiRunner, IdleWorker, certificate  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]) -> Iterator[Api]:  # noqa: F811
    shared = Shared(1)
    worker = IdleWorker(shared)
    runner = ApiRunner(tmp_path_factory, certificate, Dispatcher(shared))
    try:
        yield runner()
    finally:
        runner.stop_all()
        worker.stop()


def run(api: Api, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = ctl.main(["--socket", str(api.socket_path), *argv])
    out, err = capsys.readouterr()
    return status, out, err


def document(out: str) -> dict:
    """The --json document printed, without the served API's log lines (this process's too)."""
    lines = out.splitlines()
    start = lines.index("{")
    return orjson.loads("\n".join(lines[start:lines.index("}", start) + 1]))


def rows(out: str) -> list[str]:
    return [" ".join(line.split()) for line in out.splitlines() if line.strip()]


def test_sites_create_rename_list_and_delete(served: Api, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(served, capsys, "--json", "sites", "create", "Lab one")
    site = document(out)
    assert status == 0 and site["name"] == "Lab one"
    assert f"{site['id']}  Lab 1\n" in run(served, capsys, "sites", "rename", site["id"], "Lab 1")[1]
    status, out, _ = run(served, capsys, "sites", "list")
    assert status == 0 and any(r.startswith(f"{site['id']} Lab 1 ") for r in rows(out))
    assert "page 1, " in out
    status, _, err = run(served, capsys, "sites", "create", "Lab 1")
    assert status == 1 and err.startswith("netscanctl: 409 Name taken: ") and err.count("\n") == 1
    status, out, _ = run(served, capsys, "sites", "delete", site["id"])
    assert status == 0 and f"{site['id']}  deleted\n" in out
    status, _, err = run(served, capsys, "sites", "delete", site["id"])
    assert status == 1 and err.startswith("netscanctl: 404 Site not found")


def test_devices_filtered_and_one_device(served: Api, capsys: pytest.CaptureFixture[str]) -> None:
    ssh = {"port": 22, "protocol": "tcp", "state": "open", "service": "ssh", "product": "OpenSSH", "version": "9.2p1",
           "cves": [{"id": "CVE-2024-6387", "status": "vulnerable", "severity": "high", "cvss": 8.1}]}
    found = [{"ip": "198.18.0.5", "mac": "00:1B:21:00:00:05", "hostname": "web.lab", "vendor": "Dell Inc.",
              "os_guess": "Linux 6.x", "ports": [ssh]},
             {"ip": "198.18.0.6", "mac": "00:1B:21:00:00:06", "hostname": None, "vendor": None, "os_guess": None,
              "ports": []}]
    store: Store = served.store
    store.call("t", merge, scan_id=str(uuid.uuid4()), site_id=None, found=found, at="2026-12-01T10:00:00Z",
               covered=Covered(((0xC6120000, 0xC61200FF),), frozenset({22}), services=True, cves=True))
    status, out, _ = run(served, capsys, "devices", "--port", "22", "--min-severity", "high")
    (device_row,) = [r for r in rows(out) if "198.18.0.5" in r]
    assert status == 0 and "web.lab Dell Inc. Linux 6.x 22/tcp high 2026-12-01T10:00:00Z" in device_row
    assert "page 1, 1 of 1" in out
    status, out, _ = run(served, capsys, "--json", "devices", "--search", "nothing-like-it")
    assert status == 0 and document(out)["total"] == 0
    device_id = device_row.split()[0]
    status, out, _ = run(served, capsys, "device", device_id)
    lines = rows(out)
    assert status == 0 and "hostname web.lab" in lines and "22/tcp ssh OpenSSH 9.2p1" in lines
    assert "high CVE-2024-6387 22/tcp" in lines and "198.18.0.5 2026-12-01T10:00:00Z 2026-12-01T10:00:00Z" in lines
    assert any(r.startswith("2026-12-01T10:00:00Z device_appeared") for r in lines)
    status, _, err = run(served, capsys, "devices", "--port", "70000")
    assert status == 1 and "422" in err and "port" in err


def test_devices_format_streams_every_matching_device(served: Api, capsys: pytest.CaptureFixture[str]) -> None:
    found = [{"ip": f"198.18.0.{n}", "mac": f"00:1B:21:00:01:{n:02X}", "hostname": f"h{n}.fmt", "vendor": None,
              "os_guess": None, "ports": [{"port": 443, "protocol": "tcp", "state": "open", "service": "https"}]}
             for n in range(30, 60)]  # more than a page of the table's
    served.store.call("t", merge, scan_id=str(uuid.uuid4()), site_id=None, found=found, at="2026-12-02T10:00:00Z",
                      covered=Covered(((0xC612001E, 0xC612003B),), frozenset({443}), services=True, cves=False))
    status, out, _ = run(served, capsys, "devices", "--format", "jsonl", "--search", ".fmt")
    listed = [orjson.loads(line) for line in out.splitlines() if line.startswith('{"id"')]
    assert status == 0 and sorted(d["hostname"] for d in listed) == sorted(f"h{n}.fmt" for n in range(30, 60))
    status, out, _ = run(served, capsys, "devices", "--format", "csv", "--search", ".fmt", "--port", "443")
    lines = [line for line in out.splitlines() if ",h" in line and ".fmt," in line]
    assert status == 0 and len(lines) == 30 and all(",443,tcp,https," in line for line in lines)
    status, _, err = run(served, capsys, "devices", "--format", "csv", "--port", "70000")
    assert status == 1 and "422" in err and "port" in err and err.count("\n") == 1
