"""CVE matching after identification (scan/cves.py), over a real CveStore holding the lab's
fixture records (tests/vuln/fixtures): what a scan's devices and the scan itself gain."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import pytest

from netscand import oneshot
from netscand.engine.shm import R_PORT, S_OPEN, Result
from netscand.profiling.services import ServiceInfo
from netscand.scan.cves import NO_DATA, CveMatching, OpenedOnUse, cve_counts, merged
from netscand.scan.dispatch import Dispatcher
from netscand.scan.errors import ScanError
from netscand.scan.runner import ScanRun
from netscand.scan.spec import ScanSpec
from netscand.scan.targets import parse_targets
from netscand.vuln.records import CveRecord
from netscand.vuln.store import CveStore

FIXTURES = Path(__file__).parents[1] / "vuln" / "fixtures"
SSH = ServiceInfo("ssh", "OpenSSH", "9.2p1", "cpe:2.3:a:openbsd:openssh:9.2:p1:*:*:*:*:*:*",
                  "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3")
SNMP = ServiceInfo("snmp", "Net-SNMP", None, "cpe:2.3:a:net-snmp:net-snmp:*:*:*:*:*:*:*:*")
SERVER, PLAIN = 0xC61200E6, 0xC612000A  # 198.18.0.230 (OpenSSH, snmpd), 198.18.0.10 (no CPE)


class ThreadNotingStore(CveStore):
    """A real store that notes which threads read candidates from it."""

    threads: set[int]
    asked: int = 0  # candidates() calls

    def candidates(self, vendor: str, product: str) -> list[CveRecord]:
        self.threads.add(threading.get_ident())
        self.asked += 1
        return super().candidates(vendor, product)


@pytest.fixture
def store(tmp_path: Path) -> ThreadNotingStore:
    store = ThreadNotingStore(tmp_path / "cve.db")
    store.threads = set()
    return store


@pytest.fixture
def loaded(store: ThreadNotingStore) -> ThreadNotingStore:
    store.import_nvd([FIXTURES / "nvd-lab.json"])
    store.import_tracker(FIXTURES / "debian-tracker.json")
    return store


def _run(dispatcher: Dispatcher, cve_match: bool = True) -> ScanRun:
    """A swept and identified scan: a server with OpenSSH and snmpd, and a host without a CPE."""
    spec = ScanSpec(parse_targets(["198.18.0.0/24"]), (22, 80), 1000.0, 1, profiling=True, detect_services=True,
                    cve_match=cve_match)
    run = ScanRun(spec, dispatcher)
    for ip, port in ((SERVER, 22), (PLAIN, 80)):
        run.result.add(Result(R_PORT, S_OPEN, 64, 0, 1, 0, ip, port, 64240, 0, 0, b"\0" * 6, 0, b""), 0, "tcp")
    run.result.hosts[SERVER].services[22] = SSH
    run.result.hosts[SERVER].udp[161] = SNMP
    run.result.hosts[PLAIN].services[80] = ServiceInfo("http")
    return run


def test_ports_with_a_cpe_get_findings_devices_and_scan_get_counts(loaded: ThreadNotingStore,
                                                                    dispatcher: Dispatcher) -> None:
    matching = CveMatching(loaded)
    assert CveMatching.wanted(_run(dispatcher)) and not CveMatching.wanted(_run(dispatcher, cve_match=False))
    matched = asyncio.run(matching.run(_run(dispatcher)))
    [server] = matched.devices  # the host without a CPE is not matched at all
    assert server["ip"] == "198.18.0.230"
    ssh, snmp = (next(p for p in server["ports"] if p["port"] == n) for n in (22, 161))
    regresshion = next(f for f in ssh["cves"] if f["id"] == "CVE-2024-6387")
    # Debian's 1:9.2p1-2+deb12u3 fixed it (the tracker fixture): not vulnerable on this build.
    assert regresshion["status"] == "fixed_by_distribution" and regresshion["fixed_version"] == "1:9.2p1-2+deb12u3"
    assert "CVE-2099-0003" not in {f["id"] for f in ssh["cves"]}  # rejected
    assert all("fixed_version" not in f for f in ssh["cves"] if f["status"] != "fixed_by_distribution")
    assert snmp["cves"] == [] and "version unknown" in snmp["cve_note"]
    assert server["cve_counts"] == cve_counts([ssh, snmp])
    assert sum(server["cve_counts"].values()) == sum(f["status"] == "vulnerable" for f in ssh["cves"])
    assert matched.scan["cve_counts"] == server["cve_counts"]
    data = matched.scan["cve_data"]
    assert data["loaded"] and {s["name"] for s in data["sources"]} == {"nvd", "debian-tracker"}
    assert data["updated_at"] == loaded.status().updated_at


def test_matching_runs_off_the_event_loop(loaded: ThreadNotingStore, dispatcher: Dispatcher) -> None:
    run = _run(dispatcher)  # outside the loop: its routes are read with pyroute2's own loop

    async def on_loop() -> int:
        await CveMatching(loaded).run(run)
        return threading.get_ident()

    loop_thread = asyncio.run(on_loop())
    assert loaded.threads and loop_thread not in loaded.threads


def test_without_data_the_scan_says_so_and_nothing_is_matched(store: ThreadNotingStore,
                                                              dispatcher: Dispatcher) -> None:
    matched = asyncio.run(CveMatching(store).run(_run(dispatcher)))
    assert matched.scan == {"cve_data": {"loaded": False, "note": NO_DATA}}
    assert all("cves" not in p for d in matched.devices for p in d["ports"]) and not store.threads


def test_a_rematch_replaces_earlier_cve_fields(loaded: ThreadNotingStore) -> None:
    stale = {"port": 22, "protocol": "tcp", "state": "open", "service": "SSH", "cpe": SSH.cpe, "banner": SSH.banner,
             "cves": [{"id": "CVE-1999-0001"}], "cve_note": "old"}
    plain = {"port": 80, "protocol": "tcp", "state": "open", "service": "HTTP", "cves": [{"id": "CVE-1999-0002"}]}
    untouched = {"ip": "198.18.0.10", "os_guess": None, "ports": [{"port": 80, "protocol": "tcp", "state": "open"}]}
    [device] = asyncio.run(CveMatching(loaded).rematch([{"ip": "198.18.0.230", "os_guess": "Linux",
                                                           "ports": [stale, plain]}, untouched])).devices
    ssh, http = device["ports"]
    assert "CVE-1999-0001" not in {f["id"] for f in ssh["cves"]} and "cve_note" not in ssh
    assert "cves" not in http  # no CPE: nothing of its own to match, and nothing kept


def test_unreadable_data_is_a_note_for_a_scan_and_503_for_a_rematch(store: ThreadNotingStore,
                                                                     dispatcher: Dispatcher) -> None:
    store.path.unlink()
    store.path.mkdir()  # no SQLite file can be opened there
    matched = asyncio.run(CveMatching(store).run(_run(dispatcher)))
    assert not matched.scan["cve_data"]["loaded"] and "can't be read" in matched.scan["cve_data"]["note"]
    with pytest.raises(ScanError) as refused:
        asyncio.run(CveMatching(store).rematch([]))
    assert refused.value.status == 503 and refused.value.headers["Retry-After"]
    shutil.rmtree(store.path)


def test_a_database_that_is_not_one_costs_the_cves_until_it_is_replaced(tmp_path: Path,
                                                                       dispatcher: Dispatcher) -> None:
    path = tmp_path / "cve.db"
    path.write_bytes(b"not a database" * 100)
    matching = CveMatching(OpenedOnUse(path))  # as the daemon makes it at start: nothing opened yet
    matched = asyncio.run(matching.run(_run(dispatcher)))
    assert "file is not a database" in matched.scan["cve_data"]["note"]
    with pytest.raises(ScanError):
        asyncio.run(matching.status())
    path.unlink()
    fixed = CveStore(path)
    fixed.import_nvd([FIXTURES / "nvd-lab.json"])
    assert asyncio.run(matching.status())["loaded"]  # no restart needed
    assert asyncio.run(matching.run(_run(dispatcher))).scan["cve_data"]["loaded"]


def test_the_one_shot_result_gets_the_matched_fields(loaded: ThreadNotingStore, dispatcher: Dispatcher) -> None:
    run = _run(dispatcher)
    matched = asyncio.run(CveMatching(loaded).run(run))
    devices = merged(run.result.devices(profiling=True), matched)
    plain, server = devices
    assert "cve_counts" not in plain and all("cves" not in p for p in plain["ports"])
    assert server["cve_counts"] == matched.devices[0]["cve_counts"] and server["os_guess"] == run.result.device(
        run.result.hosts[SERVER], True)["os_guess"]


def test_a_one_shot_match_that_breaks_is_a_note_not_a_traceback(loaded: ThreadNotingStore,
                                                                 dispatcher: Dispatcher) -> None:
    run = _run(dispatcher)
    run.result.hosts[SERVER].mac = 1  # type: ignore[assignment]  # a bug anywhere in matching: device() breaks
    matched = asyncio.run(oneshot._match_cves(loaded.path, run))
    assert matched.devices == [] and matched.scan["cve_data"]["loaded"] is False
    assert matched.scan["cve_data"]["note"].startswith("CVE matching failed: ")


def test_alike_ports_are_matched_once_per_match(loaded: ThreadNotingStore) -> None:
    ssh = {"port": 22, "protocol": "tcp", "state": "open", "service": "SSH", "cpe": SSH.cpe, "banner": SSH.banner}
    matching = CveMatching(loaded)
    one = matching.match([{"ip": "198.18.0.2", "os_guess": "Linux", "ports": [ssh]}])
    asked = loaded.asked
    many = matching.match([{"ip": f"198.18.0.{n}", "os_guess": "Linux", "ports": [ssh]} for n in range(2, 12)])
    assert loaded.asked == 2 * asked  # the ten alike hosts cost what one does
    assert all(d["ports"] == one.devices[0]["ports"] for d in many.devices)
