"""Least privilege, read from /proc of the real daemon's processes: every one runs as the netscand
user with CAP_NET_RAW alone (the supervisor and the engine workers) or nothing at all (the
control process), however it was started; and a scan still works in the lab afterwards."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from netscand.lab import Lab
from netscand.scan.ports import top_ports
from tests.daemon.conftest import Daemon, ensure_daemon_user, start_daemon, stop_daemon
from tests.daemon.test_e2e import all_hosts, open_ports, truth_open, wait_for

pytestmark = pytest.mark.lab
NET_RAW = 1 << 13  # CAP_NET_RAW's bit
# systemd's User=netscand AmbientCapabilities=CAP_NET_RAW CapabilityBoundingSet=CAP_NET_RAW
# NoNewPrivileges=yes, and MemoryDenyWriteExecute=yes as the kernel's own PR_SET_MDWE.
SYSTEMD_LIKE = [
    sys.executable, "-c", "import ctypes, os, sys; ctypes.CDLL(None).prctl(65, 1, 0, 0, 0); "
                          "os.execvp(sys.argv[1], sys.argv[1:])",
    "setpriv", "--reuid", "netscand", "--regid", "netscand", "--init-groups", "--inh-caps", "-all,+net_raw",
    "--ambient-caps", "+net_raw", "--bounding-set", "-all,+net_raw", "--no-new-privs",
]


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def family(daemon: Daemon) -> dict[str, dict[str, str]]:
    """/proc/PID/status of the supervisor and of each child, by the name it gave itself."""
    out = {"supervisor": status(daemon.proc.pid)}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                comm = Path(f"/proc/{entry}/comm").read_text().strip()
            except (OSError, IndexError):
                continue  # gone meanwhile
            if ppid == daemon.proc.pid:
                out[comm] = status(int(entry))
    return out


def assert_least_privilege(daemon: Daemon, account: pwd.struct_passwd) -> None:
    procs = family(daemon)
    assert b"serve" in Path(f"/proc/{daemon.proc.pid}/cmdline").read_bytes()  # ip netns exec exec'd it
    assert set(procs) == {"supervisor", "nsd worker 0", "nsd worker 1", "nsd control 0"}
    for name, st in procs.items():
        assert st["Uid"].split() == [str(account.pw_uid)] * 4, name
        assert st["Gid"].split() == [str(account.pw_gid)] * 4, name
        assert set(st["Groups"].split()) <= {str(account.pw_gid)}, name
        assert int(st["CapBnd"], 16) == NET_RAW, name
        assert int(st["CapInh"], 16) == int(st["CapAmb"], 16) == 0, name
        assert st["NoNewPrivs"] == "1", name
        kept = 0 if name == "nsd control 0" else NET_RAW
        assert int(st["CapPrm"], 16) == int(st["CapEff"], 16) == kept, name


def assert_scan_works(lab: Lab, daemon: Daemon) -> None:
    with daemon.unix() as c:
        scan = c.post("/api/v1/scans/start", json={"target": all_hosts(lab), "profile": "quick"}).json()
        done = wait_for(c, scan["id"])
        result = c.get(f"/api/v1/scans/{scan['id']}/result").json()
    assert done["status"] == "completed"
    assert open_ports(result) == truth_open(lab, top_ports(100))


def test_started_by_root_it_switches_to_its_user_keeping_only_net_raw(lab: Lab, tmp_path: Path) -> None:
    account = ensure_daemon_user()
    state = tmp_path / "state"
    state.mkdir()
    # A token made before the first start leaves the database to root: the daemon takes it over.
    made = subprocess.run([sys.executable, "-m", "netscand", "token", "create", "--name", "ci", "--scope", "read",
                           "--state-dir", str(state)], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert (state / "netscand.db").stat().st_uid == 0
    daemon = start_daemon(lab, state)
    try:
        assert_least_privilege(daemon, account)
        for path in (state, state / "netscand.db", state / "tls" / "key.pem", daemon.socket):
            assert path.stat().st_uid == account.pw_uid, path
        assert stat.S_IMODE((state / "tls" / "key.pem").stat().st_mode) == 0o600
        assert_scan_works(lab, daemon)
    finally:
        assert stop_daemon(daemon) == 0
    assert not daemon.socket.exists()  # its user could remove what it was given


def test_started_like_systemd_as_its_user_with_ambient_net_raw_it_keeps_only_that(lab: Lab, tmp_path: Path) -> None:
    account = ensure_daemon_user()
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, account.pw_uid, account.pw_gid)  # as StateDirectory= does
    daemon = start_daemon(lab, state, runner=SYSTEMD_LIKE)
    try:
        assert_least_privilege(daemon, account)
        assert_scan_works(lab, daemon)
    finally:
        assert stop_daemon(daemon) == 0


def test_started_by_root_without_its_user_it_refuses_in_one_line(netns: str, tmp_path: Path) -> None:
    (tmp_path / "netscand.toml").write_text('[daemon]\nuser = "nsd-no-such-user"\n')
    state = tmp_path / "state"
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-m", "netscand", "serve",
                          "--config", str(tmp_path / "netscand.toml"), "--state-dir", str(state),
                          "--socket", str(tmp_path / "netscand.sock")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.startswith("netscand: user 'nsd-no-such-user' does not exist")
    assert out.stderr.count("\n") == 1
    assert not state.exists() and not (tmp_path / "netscand.sock").exists()  # nothing made as root
