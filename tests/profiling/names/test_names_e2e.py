"""query_names end to end, inside a throwaway network namespace: real net-snmp snmpd and the
lab's mDNS/NetBIOS responders on 127.0.0.1, a closed address, mute and garbage servers.

Needs root and the Debian package snmpd; it fails, never skips, without them. Nothing listens
or sends outside the namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netscand.lab import procs, truth

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
SNMPD_CONF = "rocommunity public 127.0.0.1\nsysName snmp-e2e.lab\nsysLocation netscand test\n"
TIMEOUT = 1.0  # what nsnames.py passes for the real services


def wait_udp(netns: str, port: int) -> None:
    deadline = time.monotonic() + 20
    while not subprocess.run(["ip", "netns", "exec", netns, "ss", "-Hlun", f"sport = :{port}"],
                             capture_output=True, text=True).stdout.strip():
        if time.monotonic() > deadline:
            pytest.fail(f"nothing listens on UDP {port}", pytrace=False)
        time.sleep(0.1)


@pytest.fixture
def snmpd(netns: str, tmp_path: Path) -> Iterator[None]:
    """net-snmp on 127.0.0.1:161; stopped by pid after."""
    (tmp_path / "snmpd.conf").write_text(SNMPD_CONF)
    # Its persistent state (engineBoots, ...) goes to a directory of the test's, not /var/lib/snmp;
    # not tmp_path itself, where it would overwrite the configuration, also named snmpd.conf.
    state = tmp_path / "snmp-state"
    state.mkdir()
    command = ["ip", "netns", "exec", netns, "/usr/sbin/snmpd", "-f", "-Lo", "-C", "-c", str(tmp_path / "snmpd.conf"),
               "-p", str(tmp_path / "snmpd.pid"), "udp:127.0.0.1:161"]
    with open(tmp_path / "snmpd.log", "wb") as log:
        # `ip netns exec` execs snmpd: the pid is snmpd's own
        proc = subprocess.Popen(command, stdout=log, stderr=log, env={**os.environ, "SNMP_PERSISTENT_DIR": str(state)})
    try:
        wait_udp(netns, 161)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def responders(netns: str, tmp_path: Path) -> Iterator[None]:
    """netscand.lab.responders for one host, 127.0.0.1 in the namespace, as the lab starts it."""
    state = {"hosts": [{"name": "h1", "netns": netns, "ip": "127.0.0.1", "mac": "02:6e:73:00:00:0a",
                        "mdns": "printer.local", "netbios": {"name": "FILES", "workgroup": "LAB"}}]}
    state_file = tmp_path / "names-lab.json"
    truth.write(state_file, state)
    pid = procs.spawn("netscand.lab.responders", state_file, [], tmp_path / "responders.log")
    try:
        yield
    finally:
        assert not procs.stop([pid]), "the responders outlived SIGKILL"


def run_queries(netns: str) -> dict[str, Any]:
    result = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, str(HERE / "nsnames.py")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_names_in_a_namespace(netns: str, snmpd: None, responders: None) -> None:
    out = run_queries(netns)
    for run in ("both", "uvloop"):
        found = out[run]["found"]
        assert list(found) == ["127.0.0.1"], f"{run}: only the host that answered appears"
        host = found["127.0.0.1"]
        assert host["names"] == {"mdns": "printer.local", "netbios": "FILES", "snmp": "snmp-e2e.lab"}
        snmp = host["udp"]["161"]
        assert (snmp["service"], snmp["product"]) == ("snmp", "Net-SNMP")
        assert snmp["cpe"] == "cpe:2.3:a:net-snmp:net-snmp:*:*:*:*:*:*:*:*"
        assert snmp["banner"].startswith("Linux ") and snmp["extra"]["sys_object_id"].startswith("1.3.6.1.4.1.8072.")
        assert len(host["evidence"]) == 1 and host["evidence"][0].startswith("Linux ")
        assert host["udp"]["137"]["extra"] == {"workgroup": "LAB", "mac": "02:6e:73:00:00:0a"}
        assert host["udp"]["5353"]["service"] == "mdns"
        # Answers come at once and 127.0.0.2 refuses at once: nowhere near one timeout.
        assert out[run]["elapsed"] < TIMEOUT / 2, run
    # Nothing listens on 127.0.0.2: ICMP port unreachable ends every query there at once.
    assert out["closed"]["found"] == {} and out["closed"]["elapsed"] < TIMEOUT / 2
    # Silence and garbage: each query sent 1 + retries times, then given up, all in parallel.
    assert out["mute"]["found"] == {}
    assert 0.3 * 3 <= out["mute"]["elapsed"] < 0.3 * 3 + 0.5
    assert out["received"] == {f"127.0.0.3:{port}": 3 for port in (5353, 137, 161)}
    assert out["limited"]["found"] == {} and out["most_in_flight"] == 2
    assert out["max_loop_gap"] < 0.25, "the queries blocked the event loop"
