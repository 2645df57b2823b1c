"""netscand as a systemd service: the unit's hardening as systemd-analyze rates it, and the
sd_notify protocol as a real daemon in the lab speaks it to a datagram socket standing in for
systemd's (READY=1, STATUS=, WATCHDOG=1, RELOADING=1 ... READY=1, STOPPING=1), with reloads of
the config file and the TLS certificate that leave running scans alone."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from netscand import tls
from netscand.config import DaemonConfig
from netscand.listeners import RESERVED_FDS
from netscand.lab import Lab
from netscand.lab.harness import (
    DAEMON_PORT, Daemon, all_hosts, ensure_daemon_user, open_ports, start_daemon, stop_daemon, truth_open,
)
from netscand.notify import Notifier, Receipt, start_time
from tests.daemon.conftest import Forwarder
from tests.daemon.test_e2e import wait_for

UNIT = Path(__file__).parents[2] / "systemd" / "netscand.service"
MAX_EXPOSURE = 2.0
WATCHDOG_USEC = 1_000_000  # the daemon pings every half of it
FRESH = 2.0  # supervisor.FRESH: a child that beat longer ago than this stops the pings
LONG_SCAN = {"profile": "custom", "ports": ["1-2000"], "rate": 1500}  # about 11 s over the lab's 8 hosts


def test_unit_exposure_is_at_most_2() -> None:
    out = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(UNIT)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    match = re.search(r"Overall exposure level for netscand\.service: (\d+\.\d+)", out.stdout)
    assert match, out.stdout
    assert float(match.group(1)) <= MAX_EXPOSURE, out.stdout


def test_unit_has_no_unknown_setting(tmp_path: Path) -> None:
    # verify wants ExecStart's program to exist: the entry point of this installation stands in.
    netscand = Path(sys.executable).with_name("netscand")
    unit = tmp_path / "netscand.service"
    unit.write_text(UNIT.read_text().replace("/usr/bin/netscand", str(netscand)))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout + out.stderr) == (0, "")


def test_the_unit_bounds_files_memory_and_tasks_with_room_for_the_default_limits() -> None:
    service = dict(line.split("=", 1) for line in UNIT.read_text().splitlines() if "=" in line and line[0] != "#")
    d = DaemonConfig()
    assert int(service["LimitNOFILE"]) >= d.max_connections + d.max_unix_connections + RESERVED_FDS
    assert "MemoryMax" in service and service["OOMPolicy"] == "continue"  # OOM: the supervisor restarts a child
    assert int(service["TasksMax"]) >= 64 + 32 + 16  # a worker per core on 64 cores, and the thread pools


def test_notifier_speaks_to_an_abstract_socket_and_leaves_the_environment() -> None:
    name = f"netscand-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind("\0" + name)
        env = {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid()), "HOME": "/"}
        notifier = Notifier(env)
        notifier.send("READY=1", "STATUS=up")
        assert systemd.recv(4096) == b"READY=1\nSTATUS=up"
    assert notifier.watchdog == 4.0
    assert env == {"HOME": "/"}  # children never see systemd's variables
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}).watchdog is None  # another's watchdog
    Notifier({}).send("READY=1")  # without systemd: nothing, and no error


@dataclass
class Message:
    at: float  # monotonic
    fields: dict[str, str]


class NotifySocket:
    """Stands in for systemd's notification socket: every datagram, with when it came."""

    def __init__(self, path: Path, uid: int) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        os.chown(path, uid, -1)  # the daemon sends as its own user
        self.messages: list[Message] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            with self.lock:
                self.messages.append(Message(time.monotonic(), fields))

    def since(self, t: float, key: str | None = None) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m.at >= t and (key is None or key in m.fields)]

    def wait(self, key: str, after: float = 0.0, timeout: float = 20.0,
             check: Callable[[str], bool] = lambda value: True) -> Message:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.since(after, key):
                if check(m.fields[key]):
                    return m
            time.sleep(0.05)
        raise AssertionError(f"no {key} after {after}: {self.since(after)}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    notify = NotifySocket(tmp_path / "notify", ensure_daemon_user().pw_uid)
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    try:
        yield notify
    finally:
        notify.close()


def children(daemon: Daemon) -> dict[str, int]:
    out = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == daemon.proc.pid:
                out[Path(f"/proc/{entry}/comm").read_text().strip()] = int(entry)
        except (OSError, IndexError):
            continue
    return out


def reload(daemon: Daemon) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "netscand", "reload", "--state-dir", str(daemon.state_dir),
                             "--pid", str(daemon.proc.pid)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.lab
def test_daemon_tells_systemd_ready_status_watchdog_reload_and_stop(lab: Lab, tmp_path: Path,
                                                                    systemd: NotifySocket) -> None:
    daemon = start_daemon(lab, tmp_path / "state")
    try:
        ready = systemd.wait("READY")
        # READY=1 comes with every child up, and only then.
        assert "worker 2/2, control 1/1" in ready.fields["STATUS"]
        assert all("READY" not in m.fields and "worker 2/2, control 1/1" not in m.fields.get("STATUS", "")
                   for m in systemd.since(0) if m.at < ready.at)
        assert set(children(daemon)) == {"nsd worker 0", "nsd worker 1", "nsd control 0"}
        time.sleep(2.0)
        pings = [m.at for m in systemd.since(ready.at, "WATCHDOG") if m.at < ready.at + 2.0]
        assert 3 <= len(pings) <= 5  # every half of WATCHDOG_USEC
        assert min(b - a for a, b in zip(pings, pings[1:])) > WATCHDOG_USEC / 2e6 - 0.2
        with daemon.unix() as c:
            scan = c.post("/api/v1/scans/start", json={"target": all_hosts(lab), **LONG_SCAN}).json()
            systemd.wait("STATUS", check=lambda s: "scans: 1 running, 0 queued" in s)
            # A worker that stops beating stops the pings, and keeps READY=1 back after a reload.
            worker = children(daemon)["nsd worker 0"]
            os.kill(worker, signal.SIGSTOP)
            frozen = time.monotonic()
            try:
                time.sleep(FRESH + 1.0)
                assert systemd.since(frozen + FRESH + 0.3, "WATCHDOG") == []
                reloader = reload(daemon)
                reloading = systemd.wait("RELOADING", after=frozen)
                assert int(reloading.fields["MONOTONIC_USEC"]) > 0
                time.sleep(1.0)
                assert reloader.poll() is None and systemd.since(reloading.at, "READY") == []
            finally:
                os.kill(worker, signal.SIGCONT)
            again = systemd.wait("READY", after=reloading.at, timeout=10)
            assert reloader.wait(10) == 0, reloader.stderr.read()  # systemctl reload returns only now
            assert c.get(f"/api/v1/scans/{scan['id']}").json()["status"] == "running"
            systemd.wait("WATCHDOG", after=again.at)
            done = wait_for(c, scan["id"])
            assert done["status"] == "completed"  # the reload left it alone
            result = c.get(f"/api/v1/scans/{scan['id']}/result").json()
            assert open_ports(result) == truth_open(lab, range(1, 2001))
            # Stopped with a scan running: STOPPING=1, and the scan stays running, to resume at the next start.
            cut = c.post("/api/v1/scans/start", json={"target": all_hosts(lab), **LONG_SCAN}).json()
            wait_for(c, cut["id"], statuses=("running",))
        stopped = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(20) == 0
        systemd.wait("STOPPING", after=stopped)
    finally:
        stop_daemon(daemon)
    db = sqlite3.connect(daemon.state_dir / "netscand.db")
    assert db.execute("SELECT status, error, estimated_completion FROM scans WHERE id = ?",
                      [cut["id"]]).fetchone() == ("running", None, None)
    assert db.execute("SELECT count(*) FROM resume_scans WHERE scan_id = ?", [cut["id"]]).fetchone() == (1,)


def served_fingerprint(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, ctx.wrap_socket(raw) as conn:
        der = conn.getpeercert(binary_form=True)
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


@pytest.mark.lab
def test_reload_applies_config_and_certificate_and_refuses_a_broken_config(lab: Lab, tmp_path: Path) -> None:
    conf = tmp_path / "netscand.toml"
    conf.write_text('[policy]\nallowed_targets = ["198.18.0.0/15"]\n')
    daemon = start_daemon(lab, tmp_path / "state", "--config", str(conf))
    forwarder = Forwarder(lab.scanner_ns, DAEMON_PORT)
    on_link = next(h["ip"] for h in lab.truth["hosts"] if not h["routed"])
    body = {"target": on_link, "profile": "custom", "ports": [22]}
    try:
        first = served_fingerprint(forwarder.port)
        assert first == tls.fingerprint(daemon.cert)
        with daemon.unix() as c:
            assert c.post("/api/v1/scans/start", json=body).status_code == 202
        # An admin replaces the certificate and narrows the policy, then reloads.
        tls.self_signed(daemon.cert, daemon.state_dir / "tls" / "key.pem", "renewed", ["localhost"], ["127.0.0.1"])
        conf.write_text('[policy]\nallowed_targets = ["198.19.0.0/24"]\n')
        reloader = reload(daemon)
        assert reloader.wait(30) == 0, reloader.stderr.read()
        assert served_fingerprint(forwarder.port) == tls.fingerprint(daemon.cert) != first
        with daemon.unix() as c:
            assert c.post("/api/v1/scans/start", json=body).status_code == 403
            # A broken file is refused, in one line, and what was loaded stays.
            conf.write_text("[policy\n")
            reloader = reload(daemon)
            assert reloader.wait(30) == 1
            assert reloader.stderr.read().startswith(f"netscand: reload failed, the daemon keeps its settings: {conf}")
            assert c.post("/api/v1/scans/start", json=body).status_code == 403
            assert served_fingerprint(forwarder.port) == tls.fingerprint(daemon.cert)
            assert c.get("/healthz").status_code == 200
    finally:
        forwarder.close()
        assert stop_daemon(daemon) == 0


def test_reload_without_a_running_daemon_fails_in_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    out = subprocess.run([sys.executable, "-m", "netscand", "reload", "--state-dir", str(state)],
                         capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stderr) == (1, f"netscand: no daemon is running with {state}\n")


def test_reload_signals_nothing_a_receipt_names_but_a_netscand_daemon_of_its_user(tmp_path: Path) -> None:
    """The receipt is the daemon user's to write; `netscand reload` runs as root. A receipt naming
    root's processes (with their true start times) or no process at all signals nothing."""
    ensure_daemon_user()
    state = tmp_path / "state"
    state.mkdir()
    receipt = state / "reload.json"
    victims = [subprocess.Popen(["sleep", "60"]),
               subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "netscand", "serve"])]
    try:
        for victim in victims:
            started = start_time(victim.pid)
            assert started is not None
            Receipt(victim.pid, started, 0, 0, "").write(receipt)
            out = run_reload(state)
            assert (out.returncode, out.stderr) == (
                1, f"netscand: {receipt} names pid {victim.pid}, which is not a netscand daemon run by netscand: "
                   "not signalling it (--pid names the daemon)\n")
            assert victim.poll() is None  # a SIGHUP would have ended it
    finally:
        for victim in victims:
            victim.kill()
            victim.wait()
    for hostile in (b"\xff" * 100_000, b'{"pid": "1", "started": 0, "requested": 0, "done": 0, "error": ""}',
                    b"[]", b'{"pid": 1}'):
        receipt.unlink()
        receipt.write_bytes(hostile)
        assert run_reload(state).stderr == f"netscand: no daemon is running with {state}\n"
    receipt.unlink()
    os.mkfifo(receipt)  # nobody writes it: a reader that waited would wait for ever
    assert run_reload(state).stderr == f"netscand: no daemon is running with {state}\n"


def run_reload(state: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netscand", "reload", "--state-dir", str(state), "--timeout", "5"],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.lab
def test_reload_without_a_pid_signals_the_daemon_its_receipt_names(daemon: Daemon) -> None:
    out = run_reload(daemon.state_dir)
    assert (out.returncode, out.stderr) == (0, "")
    receipt = Receipt.read(daemon.state_dir / "reload.json")
    assert receipt is not None and (receipt.pid, receipt.requested, receipt.done) == (daemon.proc.pid, 1, 1)
