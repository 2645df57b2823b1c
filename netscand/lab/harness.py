"""What tests and benchmarks share to run the real daemon in a lab: the lab built and always torn
down, temporary directories the daemon's user can reach, and `netscand serve` started in the
lab's scanner namespace with its own state directory and config, waited for until it answers.

Started by root, the daemon switches to its own user (netscand), which must exist and must reach
its state directory and the Python it runs: mkdtemp's directories (pytest's too) are closed to
other users, so these are made in /tmp and opened (mode 0755).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import pwd
import shlex
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx

import netscand
from netscand.lab.errors import LabError
from netscand.lab.lab import Lab
from netscand.lab.safety import LAB_NETS

DAEMON_PORT = 8443
DAEMON_USER = "netscand"  # the default of daemon.user
READY_TIMEOUT_S = 20
STOP_TIMEOUT_S = 20


class DaemonStartError(Exception):
    """The daemon exited or did not answer in time; the message holds its log."""


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    state_dir: Path
    socket: Path
    url: str
    log: Path

    @property
    def cert(self) -> Path:
        return self.state_dir / "tls" / "cert.pem"

    def unix(self) -> httpx.Client:
        return httpx.Client(base_url="http://netscand", transport=httpx.HTTPTransport(uds=str(self.socket)),
                            timeout=30)

    def https(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30,
                            verify=ssl.create_default_context(cafile=str(self.cert)))

    def netscand(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "netscand", *argv, "--state-dir", str(self.state_dir)],
                              capture_output=True, text=True, timeout=60, check=False)

    def token(self, name: str, scope: str) -> str:
        out = self.netscand("token", "create", "--name", name, "--scope", scope)
        if out.returncode != 0:
            raise RuntimeError(f"netscand token create failed: {out.stderr.strip()}")
        return out.stdout.strip()


def ensure_daemon_user() -> pwd.struct_passwd:
    """The account the daemon switches to (the Debian package creates it; this creates it when
    missing), given a way through the directories above what it reads after the switch: the
    Python installation (maybe under a closed home directory) and this source tree."""
    try:
        account = pwd.getpwnam(DAEMON_USER)
    except KeyError:
        # Another run may create it at the same moment: its useradd's failure is fine.
        _change_system(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", DAEMON_USER], check=False)
        account = pwd.getpwnam(DAEMON_USER)
    for path in (sysconfig.get_path("stdlib"), sysconfig.get_path("purelib"), Path(netscand.__file__).parent):
        for d in (Path(path), *Path(path).parents):
            if not d.stat().st_mode & stat.S_IXOTH:
                _change_system(["setfacl", "-m", f"u:{DAEMON_USER}:x", str(d)], check=True)
    return account


def _change_system(argv: list[str], check: bool) -> None:
    """Run a command that changes the machine beyond the bench's own files, saying so: whoever
    runs a bench should know what it left behind (an account, an ACL)."""
    print(f"harness: {shlex.join(argv)}", file=sys.stderr)
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=check)  # its complaints, if any, on stderr


def reachable_dir(prefix: str, parent: Path | str = "/tmp") -> Path:
    """A new directory in `parent` that the daemon's user may enter (mkdtemp makes it 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o755)
    return path


class ReachableTemp:
    """Stands in for pytest's tmp_path_factory (mktemp, getbasetemp), whose directories only root
    may enter: these are in /tmp, open to the daemon's user; remove() takes them all away."""

    def __init__(self) -> None:
        self.base = reachable_dir("netscand-test-")

    def getbasetemp(self) -> Path:
        return self.base

    def mktemp(self, basename: str, numbered: bool = True) -> Path:
        if numbered:
            return reachable_dir(f"{basename}-", self.base)
        path = self.base / basename
        path.mkdir()
        path.chmod(0o755)
        return path

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def lab_up(**kwargs: Any) -> Iterator[Lab]:
    """Lab.up(**kwargs), torn down however the block is left (Lab.up cleans up after itself
    when it fails)."""
    lab = Lab.up(**kwargs)
    try:
        yield lab
    finally:
        lab.down()


@contextlib.contextmanager
def capture(lab: Lab, pcap: Path, bpf: str, outbound: bool = False) -> Iterator[Path]:
    """tcpdump on the scanner's interface (nanosecond times) for the block, written to pcap, of
    what the scanner sends only if `outbound`; the block starts once it listens and tcpdump has
    written out all it holds when it ends."""
    argv = ["tcpdump", "-i", lab.truth["scanner"]["ifname"], "-n", "-U", "-Z", "root",
            "--time-stamp-precision=nano", *(["-Q", "out"] if outbound else []), "-w", str(pcap), bpf]
    proc = subprocess.Popen(lab.scanner_argv(argv), stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        if "listening on" not in line:
            raise LabError(f"tcpdump did not start: {line.strip()}")
        yield pcap
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def start_daemon(lab: Lab, state_dir: Path, *extra: str, runner: Sequence[str] = ()) -> Daemon:
    """`netscand serve` in the lab's scanner namespace, its socket and log in `state_dir` (made
    when missing; its parent must be reachable), once it answers /healthz on the Unix socket.
    `runner` is a command line that runs the daemon's, as systemd would with its settings."""
    ensure_daemon_user()
    state_dir.mkdir(exist_ok=True)
    sock = state_dir / "netscand.sock"
    log = state_dir / "daemon.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(lab.scanner_argv([
            *runner, sys.executable, "-m", "netscand", "serve", "--state-dir", str(state_dir),
            "--socket", str(sock), "--listen", f"127.0.0.1:{DAEMON_PORT}", "--workers", "2", *extra]),
            stdout=out, stderr=subprocess.STDOUT)
    daemon = Daemon(proc, state_dir, sock, "", log)
    _wait_ready(daemon)
    return daemon


def _wait_ready(daemon: Daemon) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            raise DaemonStartError(f"daemon exited with {daemon.proc.returncode}:\n{daemon.log.read_text()}")
        try:
            with daemon.unix() as c:
                if c.get("/healthz").status_code == 200:
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    daemon.proc.kill()
    daemon.proc.wait()
    raise DaemonStartError(f"daemon did not come up in {READY_TIMEOUT_S} s:\n{daemon.log.read_text()}")


def wait_workers_ready(client: httpx.Client, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
    """/readyz's body once it answers 200. start_daemon waits for /healthz, which answers before
    the engine's workers are up; a scan timed from then would pay their start-up."""
    deadline = time.monotonic() + timeout
    while (r := client.get("/readyz")).status_code != 200:
        if time.monotonic() > deadline:
            raise DaemonStartError(f"the daemon was not ready in {timeout:g} s: {r.text[:300]}")
        time.sleep(0.1)
    body: dict[str, Any] = r.json()
    return body


def stop_daemon(daemon: Daemon) -> int:
    """SIGTERM, as systemd stops it; SIGKILL if it lingers. Returns its exit status."""
    if daemon.proc.poll() is None:
        daemon.proc.terminate()
        try:
            daemon.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            daemon.proc.kill()
            daemon.proc.wait()
    return daemon.proc.returncode


@contextlib.contextmanager
def running_daemon(lab: Lab, config: str | None = None, *extra: str) -> Iterator[Daemon]:
    """A daemon of the block's own: a reachable temporary directory holding its state directory
    and `config` (a netscand.toml's text, if given), stopped and removed at the end."""
    home = reachable_dir("netscand-bench-")
    try:
        if config is not None:
            (home / "netscand.toml").write_text(config)
            extra = ("--config", str(home / "netscand.toml"), *extra)
        daemon = start_daemon(lab, home / "state", *extra)
        try:
            yield daemon
        finally:
            stop_daemon(daemon)
    finally:
        shutil.rmtree(home, ignore_errors=True)


Found = set[tuple[str, int]]  # (address, TCP port)


def in_lab(ips: Sequence[str]) -> list[str]:
    """`ips`, refused (LabError) if one is outside the lab's networks: a bench or test scans only
    what the lab built, whatever its truth file says."""
    outside = [ip for ip in ips if not any(ipaddress.ip_address(ip) in net for net in LAB_NETS)]
    if outside:
        raise LabError(f"refusing to scan {outside}: outside {', '.join(map(str, LAB_NETS))}")
    return list(ips)


def all_hosts(lab: Lab) -> list[str]:
    """Every host of the lab (the router's addresses left out), checked to be in the lab."""
    return in_lab([h["ip"] for h in lab.truth["hosts"]])


def open_ports(result: dict[str, Any]) -> Found:
    """The open TCP ports of a scan's result (GET .../result)."""
    return {(d["ip"], p["port"]) for d in result["devices"] for p in d["ports"]
            if p["state"] == "open" and p["protocol"] == "tcp"}


def truth_open(lab: Lab, ports: Iterable[int], hosts: Iterable[str] | None = None) -> Found:
    """The lab's open TCP ports among `ports` (of `hosts`, default every host), as its truth has them."""
    wanted, among = set(ports), None if hosts is None else set(hosts)
    return {(h["ip"], p) for h in lab.truth["hosts"] if among is None or h["ip"] in among
            for p in h["open"] if p in wanted}


def unwind_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so a bench's finally blocks still stop its daemon and tear its
    lab down (the smoke test, on timeout, SIGTERMs the bench's process group). Only in the calling
    process: pyroute2 (and multiprocessing) fork without exec, and pyroute2 SIGTERMs its fork when
    done; a fork that raised SystemExit would run on in our copied stack and hang the lab build."""
    main_pid = os.getpid()

    def handler(signum: int, _frame: Any) -> None:
        if os.getpid() != main_pid:
            os._exit(128 + signum)
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handler)


def print_bench_footer() -> None:
    """The lines a bench's figures end with: the load they were measured under, and the command
    that measured them (to paste beside the figures)."""
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"command: {shlex.join(sys.orig_argv)}")


def bench_exit(main: Callable[[], int]) -> NoReturn:
    """A bench's process: main's exit status, or 130 on Ctrl-C (its lab is down by then: main
    tears it down in a finally)."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        sys.exit(130)


def parse_bench_args(parser: argparse.ArgumentParser, smoke: dict[str, Any],
                     argv: Sequence[str] | None = None) -> argparse.Namespace:
    """A benchmark's arguments, with --smoke: `smoke`'s sizes become the defaults (flags given
    still win), so the bench runs end to end in seconds; CI runs every bench so (tests/bench)."""
    parser.add_argument("--smoke", action="store_true",
                        help="smallest sizes, seconds: checks that the bench still runs end to end")
    unknown = set(smoke) - {action.dest for action in parser._actions}
    if unknown:  # set_defaults would take them silently, and the smoke would run at full size
        raise ValueError(f"smoke sizes for no option of the bench: {', '.join(sorted(unknown))}")
    args = parser.parse_args(argv)
    if args.smoke:
        parser.set_defaults(**smoke)
        args = parser.parse_args(argv)
    return args
