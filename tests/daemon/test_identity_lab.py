"""Identity from stable evidence in the lab (issue 13: "otherwise the address plus stable evidence
the probes already see"): each lab sshd has its own host key, a scan's result carries each SSH
port's key as `ssh-keygen -lf` prints it, and a routed host (behind the lab router, so no MAC is
seen) moved to a new address stays one device in the inventory, by its host key.

The moved host is the routed imitation host h4, moved by netscand.lab.mutate.move_host (which
moves imitation hosts only): this test runs a real sshd in h4's namespace, on a port h4's
imitation services leave free and on every address of it, so that it answers at h4's new
address as at its old. The lab is this module's own (prefix PREFIX): its move reaches no other
test's lab, and each run builds it anew.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netscand.lab import Lab, daemons, mutate, namespaces
from netscand.lab.harness import Daemon, lab_up, running_daemon
from tests.daemon.test_e2e import wait_for
from tests.sshkeys import keygen_fingerprint

pytestmark = pytest.mark.lab

PREFIX = "nsid"
MOVED, MOVED_TO, SSH_PORT = "h4", "198.19.0.200", 2222  # h4: routed; its imitation ports leave 2222 free
SERVERS = ("s1", "s3")  # each runs the lab's openssh on 22 (s3 behind the router), s1 nginx's TLS on 443
PORTS = [22, 443, SSH_PORT]
LISTEN_TIMEOUT_S = 10.0


@pytest.fixture
def lab(lab_lock: None) -> Iterator[Lab]:
    with lab_up(hosts=4, seed=1, prefix=PREFIX, servers=True) as built:
        yield built


@pytest.fixture
def daemon(lab: Lab) -> Iterator[Daemon]:
    with running_daemon(lab) as d:
        yield d


@pytest.fixture
def moved_sshd(lab: Lab, tmp_path: Path) -> Iterator[Path]:
    """A real sshd in the moved host's namespace, on every address it will have; its host key file."""
    found = mutate.host(lab, MOVED)
    assert found["routed"] and SSH_PORT not in found["open"]
    key = tmp_path / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ns = mutate.lab_netns(lab, found)
    argv = ["/usr/sbin/sshd", "-D", "-e", "-p", str(SSH_PORT), "-o", "ListenAddress=0.0.0.0",
            "-o", f"PidFile={tmp_path}/sshd.pid", "-h", str(key)]
    Path("/run/sshd").mkdir(exist_ok=True)
    with open(tmp_path / "sshd.log", "ab") as log:
        proc = subprocess.Popen(namespaces.exec_argv(ns, argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        _wait_listening(ns, SSH_PORT, tmp_path / "sshd.log")
        yield key
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait_listening(ns: str, port: int, log: Path) -> None:
    deadline = time.monotonic() + LISTEN_TIMEOUT_S
    while f":{port} " not in subprocess.run(namespaces.exec_argv(ns, ["ss", "-Hltn"]), check=True, capture_output=True,
                                            text=True).stdout:
        assert time.monotonic() < deadline, f"sshd never listened on {port}: {log.read_text()[-2000:]}"
        time.sleep(0.1)


def _scan(c: Any, targets: list[str], site_id: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """A scan with service detection of `targets`: its id, and its result's devices by address."""
    r = c.post("/api/v1/scans/start", json={"target": targets, "profile": "custom", "ports": PORTS,
                                            "enable_profiling": True, "site_id": site_id})
    assert r.status_code == 202, r.text
    scan_id = r.json()["id"]
    assert wait_for(c, scan_id)["status"] == "completed"
    result = c.get(f"/api/v1/scans/{scan_id}/result")
    assert result.status_code == 200, result.text
    return scan_id, {d["ip"]: d for d in result.json()["devices"]}


def test_host_keys_are_each_hosts_own_and_follow_a_moved_routed_host(
        lab: Lab, daemon: Daemon, moved_sshd: Path) -> None:
    work = daemons.work_dir(lab.state_dir, lab.prefix)
    servers = {name: mutate.host(lab, name)["ip"] for name in SERVERS}
    moved_from = mutate.host(lab, MOVED)["ip"]
    targets = sorted({*servers.values(), moved_from, MOVED_TO})
    with daemon.unix() as c:
        site = c.post("/api/v1/sites", json={"name": "identity"})
        assert site.status_code == 201, site.text
        site_id = site.json()["id"]
        _, first = _scan(c, targets, site_id)

        # Each lab sshd's key is its own, and the result says it as ssh-keygen does.
        for name, ip in servers.items():
            assert first[ip]["host_keys"] == [{"port": 22, "type": "ssh-ed25519",
                                               "fingerprint": keygen_fingerprint(daemons.host_key(work / name))}]
        assert len({first[ip]["host_keys"][0]["fingerprint"] for ip in servers.values()}) == len(servers)
        # s1's nginx: its certificate's SHA-256, as openssl computes it of the certificate file
        [cert] = first[servers["s1"]]["certificates"]
        assert (cert["port"], cert["sha256"]) == (443, _openssl_sha256(work / "s1" / "cert.pem"))

        fingerprint = keygen_fingerprint(moved_sshd)
        moved = first[moved_from]
        assert moved["mac"] is None  # behind the router: no MAC to know it by
        assert {"port": SSH_PORT, "type": "ssh-ed25519", "fingerprint": fingerprint} in moved["host_keys"]

        mutate.move_host(lab, MOVED, MOVED_TO)
        second_id, second = _scan(c, targets, site_id)
        assert moved_from not in second and MOVED_TO in second

        devices = c.get("/api/v1/devices", params={"site_id": site_id}).json()
        assert devices["total"] == len(servers) + 1, devices
        [device] = [d for d in devices["devices"] if d["identity"] == f"ssh:{fingerprint}"]
        assert device["ip"] == MOVED_TO and device["present"]
        record = c.get(f"/api/v1/devices/{device['id']}").json()
        assert {a["ip"] for a in record["addresses"]} == {moved_from, MOVED_TO}
        assert [(ch["kind"], ch["before"], ch["after"]) for ch in record["changes"]
                if ch["kind"] != "device_appeared"] == [("address_changed", moved_from, MOVED_TO)]
        changes = c.get(f"/api/v1/scans/{second_id}/changes").json()["changes"]
        assert [(ch["kind"], ch["ip"]) for ch in changes] == [("address_changed", MOVED_TO)]


def _openssl_sha256(pem: Path) -> str:
    out = subprocess.run(["openssl", "x509", "-in", str(pem), "-noout", "-fingerprint", "-sha256"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().partition("=")[2].replace(":", "").lower()
