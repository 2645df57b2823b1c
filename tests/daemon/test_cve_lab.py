"""CVE matching end to end: the daemon in the lab's scanner namespace scans the lab's servers
(real Debian daemons), with CVE data imported by `netscand cve import` into its cve.db from the
fixtures (tests/vuln/fixtures: real NVD records and Debian's fixed versions).

EXPECTED is written by hand from those records (nvd-lab.json's configurations, and the bookworm
fixed versions in debian-tracker.json; see the fixtures' README), for the builds the lab runs
(Debian 12: OpenSSH 1:9.2p1-2+deb12u10, nginx 1.22.1, Redis 7.0.15, MariaDB 10.11.19-0+deb12u1,
vsftpd 3.0.3, dnsmasq 2.90), not computed by the code under test.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from netscand.lab import Lab
from netscand.lab.harness import Daemon, in_lab
from netscand.statuses import FINISHED

pytestmark = pytest.mark.lab
FIXTURES = Path(__file__).parents[1] / "vuln" / "fixtures"
NVD, TRACKER = FIXTURES / "nvd-lab.json", FIXTURES / "debian-tracker.json"
FBD, VULN, PLATFORM = "fixed_by_distribution", "vulnerable", "needs_platform"
DEB = "1:9.2p1-2+deb12u"
SSH_BUILD = "Debian-2+deb12u10"  # the lab's OpenSSH, as its banner says

Findings = dict[str, tuple[str, str | None]]  # CVE id -> (status, fixed_version)
EXPECTED: dict[str, Findings] = {
    # Every 9.2p1 CVE is fixed in an earlier bookworm build than deb12u10: the tracker decides.
    "openssh": {
        "CVE-2023-28531": (FBD, DEB + "2"), "CVE-2023-38408": (FBD, DEB + "1"),
        "CVE-2023-48795": (FBD, DEB + "2"), "CVE-2023-51384": (FBD, DEB + "2"),
        "CVE-2023-51385": (FBD, DEB + "2"), "CVE-2024-6387": (FBD, DEB + "3"),
        "CVE-2025-26465": (FBD, DEB + "5"), "CVE-2025-32728": (FBD, DEB + "6"),
        "CVE-2099-0001": (VULN, None),  # >= 9.0, < 9.9 AND linux_kernel: the OS guess is Linux
        "CVE-2099-0002": (PLATFORM, None),  # 9.2p1 AND windows
    },  # CVE-2023-25136 names 9.1 only; CVE-2099-0003 is rejected
    # nginx's banner names no distribution build: the upstream ranges decide.
    "nginx": {"CVE-2023-44487": (VULN, None), "CVE-2024-7347": (VULN, None), "CVE-2025-23419": (VULN, None),
              "CVE-2099-0006": (VULN, None)},  # not CVE-2022-41741 (< 1.22.1), CVE-2099-0005 (> 1.22.1)
    "redis": {"CVE-2024-31228": (VULN, None), "CVE-2024-31449": (VULN, None), "CVE-2024-46981": (VULN, None),
              "CVE-2025-21605": (VULN, None), "CVE-2025-49844": (VULN, None),
              "CVE-2099-0004": (VULN, None)},  # not CVE-2023-41056 (< 7.0.15)
    "mariadb": {"CVE-2023-52970": (FBD, "1:10.11.13-0+deb12u1")},  # < 10.12.0 upstream; Debian fixed it
    "vsftpd": {"CVE-2021-30047": (VULN, None)},  # not CVE-2015-1419 (<= 3.0.2)
    "dnsmasq": {},  # CVE-2023-28450, -50387, -50868 end at 2.90, excluded
}
# Daemons whose product no fixture record names: matched, and nothing found.
UNLISTED = ("memcached", "miniupnpd", "snmpd", "ntpsec", "tftpd-hpa")


def wait_for(client: httpx.Client, scan_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scan = client.get(f"/api/v1/scans/{scan_id}").json()
        if scan["status"] in FINISHED:
            return scan
        time.sleep(0.3)
    raise AssertionError(f"scan {scan_id} still {scan['status']}")


def _daemons(lab: Lab) -> dict[tuple[str, str, int], str]:
    """(ip, protocol, port) -> the daemon the lab runs there: the servers' and the router's."""
    router = lab.truth["router"]
    hosts = [*(h for h in lab.truth["hosts"] if h.get("kind") == "server"),
             {"ip": router["ips"][0], "services": router["services"], "udp": router["udp"]}]
    return {(h["ip"], proto, int(port)): s["daemon"] for h in hosts
            for proto, key in (("tcp", "services"), ("udp", "udp")) for port, s in h[key].items()}


def _scan(client: httpx.Client, lab: Lab) -> dict[str, Any]:
    """A custom scan of the servers' TCP ports with profiling and CVE matching; its result."""
    daemons = _daemons(lab)
    body = {"target": in_lab(sorted({ip for ip, _, _ in daemons})), "profile": "custom",
            "ports": sorted({port for _, proto, port in daemons if proto == "tcp"}),
            "enable_profiling": True, "enable_cve_match": True}
    r = client.post("/api/v1/scans/start", json=body)
    assert r.status_code == 202, r.text
    assert wait_for(client, r.json()["id"])["status"] == "completed"
    return client.get(f"/api/v1/scans/{r.json()['id']}/result").json()


def _findings(result: dict[str, Any]) -> dict[tuple[str, str, int], Findings]:
    return {(d["ip"], p["protocol"], p["port"]): {f["id"]: (f["status"], f.get("fixed_version")) for f in p["cves"]}
            for d in result["devices"] for p in d["ports"] if "cves" in p}


def _assert_table(lab: Lab, result: dict[str, Any], table: dict[str, Findings]) -> None:
    """Every TCP port (the ones scanned) of a daemon with fixture records has exactly its row's
    findings; every other matched port (a product no record names, a version not announced, a
    UDP service that answered a name query) has none."""
    daemons, found = _daemons(lab), _findings(result)
    wanted = {where: table.get(daemon, {}) for where, daemon in daemons.items()
              if daemon in EXPECTED and where[1] == "tcp"}
    assert {where: found.get(where) for where in wanted} == wanted
    assert set(found) <= set(daemons)  # nothing matched where no lab daemon is
    assert all(found[w] == {} for w in found if daemons[w] in UNLISTED)
    assert all(daemons[w] in (*EXPECTED, *UNLISTED) for w in found)


def _import(daemon: Daemon, *argv: str) -> Any:
    return daemon.netscand("cve", "import", *map(str, argv))


def _status(client: httpx.Client) -> dict[str, Any]:
    status = client.get("/api/v1/cve/status").json()
    return {k: v for k, v in status.items() if k != "age_seconds"}


def _ssh_banner_is_the_tables(result: dict[str, Any]) -> None:
    banners = {p.get("banner") for d in result["devices"] for p in d["ports"] if p["port"] == 22 and p["state"] == "open"}
    assert banners and all(b and b.endswith(SSH_BUILD) for b in banners), banners


def test_a_scan_matches_the_fixture_cves_per_daemon_and_a_bad_feed_changes_nothing(
        lab: Lab, daemon: Daemon, tmp_path: Path) -> None:
    for argv in ((NVD,), ("--debian-tracker", TRACKER)):
        out = _import(daemon, *argv)
        assert out.returncode == 0, out.stderr
    with daemon.unix() as c:
        result = _scan(c, lab)
        _ssh_banner_is_the_tables(result)
        _assert_table(lab, result, EXPECTED)
        assert result["cve_data"]["loaded"] and result["cve_data"]["updated_at"]
        assert result["cve_counts"] == {s: sum(d.get("cve_counts", {}).get(s, 0) for d in result["devices"])
                                        for s in ("critical", "high", "medium", "low", "none")}
        before = _status(c)
        truncated = tmp_path / "nvd-truncated.json"
        truncated.write_bytes(NVD.read_bytes()[: NVD.stat().st_size // 2])
        refused = _import(daemon, NVD, truncated)  # one import: the good file is not kept either
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1
        assert str(truncated) in refused.stderr and "Traceback" not in refused.stderr
        assert _status(c) == before
        again = c.post(f"/api/v1/scans/{result['id']}/rematch").json()
    assert _findings(again) == _findings(result)


def test_without_data_a_scan_says_so_and_rematches_follow_the_imports(
        lab: Lab, daemon: Daemon, tmp_path: Path) -> None:
    with daemon.unix() as c:
        assert not c.get("/api/v1/cve/status").json()["loaded"]
        result = _scan(c, lab)
        assert result["cve_data"] == {
            "loaded": False, "note": "no CVE data is loaded: run `netscand cve sync` or `netscand cve import`"}
        assert "cve_counts" not in result and not _findings(result)
        assert result["devices_found"] == len({ip for ip, _, _ in _daemons(lab)})  # it completed all the same
        # First only OpenSSH's records; then the whole feed: each re-match follows the data.
        feed = json.loads(NVD.read_text())
        feed["vulnerabilities"] = [v for v in feed["vulnerabilities"] if ":openbsd:openssh:" in json.dumps(v)]
        (tmp_path / "openssh.json").write_text(json.dumps(feed))
        assert _import(daemon, tmp_path / "openssh.json", "--debian-tracker", TRACKER).returncode == 0
        partial = c.post(f"/api/v1/scans/{result['id']}/rematch").json()
        _assert_table(lab, partial, {"openssh": EXPECTED["openssh"]})
        assert _import(daemon, NVD).returncode == 0
        whole = c.post(f"/api/v1/scans/{result['id']}/rematch").json()
        _assert_table(lab, whole, EXPECTED)
        assert c.get(f"/api/v1/scans/{result['id']}/result").json() == whole  # stored
