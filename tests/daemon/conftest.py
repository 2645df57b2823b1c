"""A real daemon for end-to-end tests: `netscand serve` in the lab's scanner namespace, with a
temporary state directory, a real Unix socket and a real TLS port.

The TLS port lives on the scanner namespace's loopback, which this (root-namespace) test process
can't reach, so a small forwarder relays TCP bytes to it: a thread that has entered the scanner
namespace (setns affects only the calling thread) connects there for each accepted connection.
TLS runs end to end through it.

Started by root, the daemon switches to its own user (netscand), which must exist and must reach
its state directory and the Python it runs: pytest's own temporary directories are closed to
other users, so these tests' tmp_path and tmp_path_factory make theirs in /tmp instead.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pyroute2 import netns

import netscand
from netscand.lab import Lab

DAEMON_PORT = 8443
DAEMON_USER = "netscand"  # the default of daemon.user


@dataclass
class Daemon:
    proc: subprocess.Popen
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

    def netscand(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "netscand", *argv, "--state-dir", str(self.state_dir)],
                              capture_output=True, text=True, timeout=60)

    def token(self, name: str, scope: str) -> str:
        out = self.netscand("token", "create", "--name", name, "--scope", scope)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()


class Forwarder:
    """Root-namespace 127.0.0.1:port -> (namespace, 127.0.0.1:target)."""

    def __init__(self, namespace: str, target: int) -> None:
        self.namespace, self.target = namespace, target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        netns.setns(self.namespace, flags=0)  # this thread only
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        self.listener.close()


def ensure_daemon_user() -> pwd.struct_passwd:
    """The account the daemon switches to (the Debian package creates it; tests create it when
    missing), given a way through the directories above what it reads after the switch: the
    Python installation (here maybe under a closed home directory) and this source tree."""
    try:
        account = pwd.getpwnam(DAEMON_USER)
    except KeyError:
        # Another test run may create it at the same moment: its useradd's failure is fine.
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", DAEMON_USER], capture_output=True)
        account = pwd.getpwnam(DAEMON_USER)
    for path in (sysconfig.get_path("stdlib"), sysconfig.get_path("purelib"), Path(netscand.__file__).parent):
        for d in (Path(path), *Path(path).parents):
            if not d.stat().st_mode & stat.S_IXOTH:
                subprocess.run(["setfacl", "-m", f"u:{DAEMON_USER}:x", str(d)], check=True)
    return account


class ReachableTemp:
    """Stands in for pytest's tmp_path_factory (mktemp, getbasetemp), whose directories only root
    may enter: these are in /tmp, open to the daemon's user, and go when the session ends."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="netscand-test-", dir="/tmp"))
        self.base.chmod(0o755)

    def getbasetemp(self) -> Path:
        return self.base

    def mktemp(self, basename: str, numbered: bool = True) -> Path:
        if numbered:
            path = Path(tempfile.mkdtemp(prefix=f"{basename}-", dir=self.base))
        else:
            path = self.base / basename
            path.mkdir()
        path.chmod(0o755)
        return path


@pytest.fixture(scope="session")
def tmp_path_factory() -> Iterator[ReachableTemp]:
    temp = ReachableTemp()
    try:
        yield temp
    finally:
        shutil.rmtree(temp.base, ignore_errors=True)


@pytest.fixture
def tmp_path(request: pytest.FixtureRequest, tmp_path_factory: ReachableTemp) -> Path:
    # As pytest names them: short (a Unix socket's path has 108 bytes), no parameter punctuation.
    return tmp_path_factory.mktemp(re.sub(r"\W", "_", request.node.name)[:30])


def start_daemon(lab: Lab, state_dir: Path, *extra: str, runner: Sequence[str] = ()) -> Daemon:
    """`runner` is a command line that runs the daemon's, as systemd would with its settings."""
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
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with daemon.unix() as c:
                if c.get("/healthz").status_code == 200:
                    return daemon
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"daemon did not come up:\n{log.read_text()}")


def stop_daemon(daemon: Daemon) -> int:
    if daemon.proc.poll() is None:
        daemon.proc.terminate()
        try:
            daemon.proc.wait(20)
        except subprocess.TimeoutExpired:
            daemon.proc.kill()
            daemon.proc.wait()
    return daemon.proc.returncode


@pytest.fixture
def daemon(lab: Lab, tmp_path: Path) -> Iterator[Daemon]:
    d = start_daemon(lab, tmp_path / "state")
    forwarder = Forwarder(lab.scanner_ns, DAEMON_PORT)
    d.url = f"https://127.0.0.1:{forwarder.port}"
    try:
        yield d
    finally:
        forwarder.close()
        stop_daemon(d)
        os.environ.pop("NETSCAND_TOKEN", None)
