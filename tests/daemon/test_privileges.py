"""Least privilege, read from /proc of the real daemon's processes: every one runs as the netscand
user with CAP_NET_RAW alone (the supervisor and the engine workers) or nothing at all (the
control process), however it was started; and a scan still works in the lab afterwards."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

import netscand
from netscand.lab import Lab
from netscand.lab.grade import OK, grade
from netscand.lab.harness import (
    DAEMON_PORT, Daemon, all_hosts, ensure_daemon_user, open_ports, reachable_dir, start_daemon, stop_daemon,
    truth_open,
)
from netscand.scan.ports import top_ports
from tests.daemon.conftest import Forwarder
from tests.daemon.test_e2e import wait_for
from tests.daemon.test_service import children

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
    # A token made by root before the first start: made as the daemon's user, whose database it is.
    made = subprocess.run([sys.executable, "-m", "netscand", "token", "create", "--name", "ci", "--scope", "read",
                           "--state-dir", str(state)], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert {p.name: p.stat().st_uid for p in state.iterdir()} == {"netscand.db": account.pw_uid}
    # What an older netscand run by root left is taken over at start.
    (state / "reload.json").write_text("{}")
    daemon = start_daemon(lab, state)
    try:
        assert_least_privilege(daemon, account)
        for path in (state, state / "netscand.db", state / "reload.json", state / "tls" / "key.pem", daemon.socket):
            assert path.stat().st_uid == account.pw_uid, path
        assert daemon.socket.stat().st_gid == account.pw_gid  # made by that user, in its group
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



# What the daemon's user needs to read after the switch (netscand.preload)


def serve_refused(netns: str, tmp_path: Path, python: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`netscand serve` by root, from / (so that sys.path holds no checkout but PYTHONPATH's)."""
    state, sock = tmp_path / "state", tmp_path / "netscand.sock"
    out = subprocess.run(["ip", "netns", "exec", netns, python, "-m", "netscand", "serve", "--state-dir", str(state),
                          "--socket", str(sock)], capture_output=True, text=True, timeout=60, cwd="/",
                         env=os.environ | env)
    assert out.returncode == 1, out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert not state.exists() and not sock.exists()  # refused before anything was made
    return out


def closed_directory() -> Path:
    """A directory only root may enter, in /tmp (pytest's own are closed to everyone already)."""
    closed = Path(tempfile.mkdtemp(prefix="netscand-closed-", dir="/tmp"))
    closed.chmod(0o700)
    return closed


def test_an_interpreter_the_daemon_user_cannot_read_is_refused_in_one_line(netns: str, tmp_path: Path) -> None:
    """As with a Python installed under /root (pyenv): a venv whose interpreter is a copy, in a
    directory only root may enter; netscand and its dependencies come from where the user reaches."""
    ensure_daemon_user()
    closed = closed_directory()
    try:
        subprocess.run([sys.executable, "-m", "venv", "--copies", "--without-pip", str(closed / "venv")], check=True)
        python = closed / "venv" / "bin" / "python"
        source = Path(netscand.__file__).parents[1]
        out = serve_refused(netns, tmp_path, str(python),
                            {"PYTHONPATH": f"{sysconfig.get_path('purelib')}:{source}"})
    finally:
        shutil.rmtree(closed)
    assert out.stderr == (
        f"netscand: the daemon user 'netscand' cannot read {python} (needed to run netscand after the switch): "
        f"it may not enter {closed} (mode 0700, owner root:root); run netscand from a Python installation that "
        "user can read, or give it access\n")


def test_a_package_the_daemon_user_cannot_read_is_refused_in_one_line(netns: str, tmp_path: Path) -> None:
    ensure_daemon_user()
    closed = closed_directory()
    try:
        shutil.copytree(Path(netscand.__file__).parent, closed / "netscand")
        out = serve_refused(netns, tmp_path, sys.executable, {"PYTHONPATH": str(closed)})
    finally:
        shutil.rmtree(closed)
    assert out.stderr.startswith(f"netscand: the daemon user 'netscand' cannot read {closed}/netscand (needed to "
                                 f"run netscand after the switch): it may not enter {closed} (mode 0700")


def serve_state_refused(netns: str, state: Path, runner: Sequence[str] = ()) -> str:
    """`netscand serve --state-dir state` (by root, or through `runner`): exit 1 and one line,
    before the socket was bound. Returns the line."""
    ensure_daemon_user()
    sock = Path("/tmp") / f"netscand-refused-{os.getpid()}.sock"
    out = subprocess.run(["ip", "netns", "exec", netns, *runner, sys.executable, "-m", "netscand", "serve",
                          "--state-dir", str(state), "--socket", str(sock)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert not sock.exists()  # refused before the socket was bound
    return out.stderr


def unreachable_line(state: Path, closed: Path) -> str:
    return (f"netscand: the daemon user 'netscand' cannot reach its state directory {state}: it may not enter "
            f"{closed} (mode 0700, owner root:root); give it access (chmod o+x, or an ACL) or choose another "
            "state directory\n")


def test_a_state_directory_the_daemon_user_cannot_reach_is_refused_in_one_line(netns: str) -> None:
    """As `python bench/api.py` once did: the state directory inside a root-only mkdtemp. Owning
    the directory is not enough for the daemon's user; the line names the directory in its way."""
    closed = closed_directory()
    try:
        line = serve_state_refused(netns, closed / "state")
        assert not (closed / "state").exists()  # refused before anything was made
    finally:
        shutil.rmtree(closed)
    assert line == unreachable_line(closed / "state", closed)


def test_run_as_its_user_like_systemd_an_unreachable_state_directory_is_named_too(netns: str) -> None:
    """No switch to make (User=netscand): the same check, as the user it already is."""
    closed = closed_directory()
    try:
        line = serve_state_refused(netns, closed / "state", runner=SYSTEMD_LIKE)
    finally:
        shutil.rmtree(closed)
    assert line == unreachable_line(closed / "state", closed)


def test_a_state_directory_that_links_into_a_closed_directory_names_that_directory(netns: str) -> None:
    closed, open_ = closed_directory(), reachable_dir("netscand-link-")
    try:
        (closed / "state").mkdir()
        (open_ / "state").symlink_to(closed / "state")
        line = serve_state_refused(netns, open_ / "state")
        assert (closed / "state").stat().st_uid == 0  # nothing handed over before the check
    finally:
        shutil.rmtree(closed)
        shutil.rmtree(open_)
    assert line == unreachable_line(closed / "state", closed)


@pytest.mark.parametrize("below", ["", "state"], ids=["is-a-file", "under-a-file"])
def test_a_state_directory_that_is_a_file_or_under_one_is_refused_in_one_line(netns: str, below: str) -> None:
    home = reachable_dir("netscand-file-")
    try:
        (home / "file").write_text("")
        state = home / "file" / below if below else home / "file"
        line = serve_state_refused(netns, state)
    finally:
        shutil.rmtree(home)
    assert line.startswith("netscand: ")
    assert str(home / "file") in line


def hide_python(daemon: Daemon, keep: Path) -> None:
    """Put a root-only tmpfs over the standard library, site-packages and netscand, in the daemon's
    own mount namespace (ip netns exec made it one): as if its Python were under /root, or an
    upgrade had replaced it. netaddr stays, through `keep`: it reads its OUI registry file at each
    lookup, which nothing can load ahead (the check at start covers it)."""
    pid = daemon.proc.pid
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")  # never this machine's
    stdlib, site, package = sysconfig.get_path("stdlib"), sysconfig.get_path("purelib"), Path(netscand.__file__).parent
    keep.mkdir()
    script = (f"set -e\nmount --bind {site}/netaddr {keep}\n"
              f"mount -t tmpfs -o mode=0700 tmpfs {stdlib}\nmount -t tmpfs -o mode=0700 tmpfs {package}\n"
              f"mount -t tmpfs -o mode=0711 tmpfs {site}\nmkdir {site}/netaddr\nmount --bind {keep} {site}/netaddr\n")
    subprocess.run(["nsenter", "-t", str(pid), "-m", "sh", "-c", script], check=True, timeout=30)


def test_with_its_python_hidden_after_start_the_daemon_still_serves_and_scans(lab: Lab, tmp_path: Path) -> None:
    """Everything imported lazily (datetime.strptime's _strptime, importlib.resources' readers, the
    idna codec, uvicorn's lifespan) and the package's data were loaded before the switch: a scan
    with service detection, its result, TLS, a reload and a restarted control process need none."""
    daemon = start_daemon(lab, tmp_path / "state")
    token = daemon.token("hidden", "read")
    forwarder = Forwarder(lab.scanner_ns, DAEMON_PORT)
    try:
        hide_python(daemon, tmp_path / "netaddr")
        os.kill(children(daemon)["nsd control 0"], signal.SIGKILL)  # the next one starts with nothing to read
        with daemon.unix() as c:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and children(daemon).get("nsd control 0") is None:
                time.sleep(0.1)
            wait_healthy(c)
            scan = c.post("/api/v1/scans/start", json={"target": all_hosts(lab), "profile": "normal"}).json()
            assert wait_for(c, scan["id"])["status"] == "completed"
            result = c.get(f"/api/v1/scans/{scan['id']}/result")
            assert result.status_code == 200, result.text
        assert open_ports(result.json()) == truth_open(lab, top_ports(1000))
        wrong = [g for g in grade(lab.truth, result.json()["devices"], set(top_ports(1000))) if g.verdict != OK]
        assert wrong == []  # vendors, host names and OS guesses too
        verify = ssl.create_default_context(cafile=str(daemon.cert))
        with httpx.Client(base_url=f"https://127.0.0.1:{forwarder.port}", verify=verify, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as https:
            assert https.get(f"/api/v1/scans/{scan['id']}/result").status_code == 200
        reloaded = daemon.netscand("reload", "--pid", str(daemon.proc.pid))
        assert reloaded.returncode == 0, reloaded.stderr
    finally:
        forwarder.close()
        assert stop_daemon(daemon) == 0
    problems = [line for line in daemon.log.read_text().splitlines()
                if '"level": "error"' in line or "Error" in line or "Traceback" in line]
    assert problems == []


def wait_healthy(c: httpx.Client) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if c.get("/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the daemon did not answer again")


# Root follows no link its user could have put in the state directory


def planted(tmp_path: Path) -> tuple[Path, Path, dict[Path, tuple[int, int, int, bytes]]]:
    """A state directory of the daemon user's, with links to root's files where root used to
    write or chown; the targets and how they were."""
    account = ensure_daemon_user()
    state, root_only = tmp_path / "state", tmp_path / "root-only"
    state.mkdir()
    root_only.mkdir()
    os.chown(state, account.pw_uid, account.pw_gid)
    secret = root_only / "secret"
    secret.write_bytes(b"root's own\n")
    secret.chmod(0o600)
    (root_only / "cert.pem").write_bytes(b"root's certificate\n")
    os.link(secret, state / "netscand.db-wal")  # the user could, where fs.protected_hardlinks is off
    (state / "netscand.db-shm").symlink_to(secret)
    (state / "reload.json").symlink_to(secret)
    (state / "tls").symlink_to(root_only)
    before = {p: _snapshot(p) for p in (secret, root_only / "cert.pem", root_only)}
    return state, root_only, before


def _snapshot(path: Path) -> tuple[int, int, int, bytes]:
    st = path.stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), b"" if path.is_dir() else path.read_bytes()


def test_a_token_made_by_root_follows_no_link_in_the_state_directory(tmp_path: Path) -> None:
    state, root_only, before = planted(tmp_path)
    out = subprocess.run([sys.executable, "-m", "netscand", "token", "create", "--name", "x", "--state-dir",
                          str(state)], capture_output=True, text=True, timeout=60)
    assert out.stderr.count("\n") <= 1, out.stderr  # it may fail (the -wal is not the user's), in one line
    assert {p: _snapshot(p) for p in before} == before
    assert sorted(p.name for p in root_only.iterdir()) == ["cert.pem", "secret"]


def test_the_daemon_started_by_root_follows_no_link_in_its_directories(netns: str, tmp_path: Path) -> None:
    state, root_only, before = planted(tmp_path)
    sock = state / "netscand.sock"
    sock.symlink_to(root_only / "secret")

    def serve() -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-m", "netscand", "serve", "--state-dir",
                               str(state), "--socket", str(sock), "--workers", "1"],
                              capture_output=True, text=True, timeout=60)

    out = serve()
    assert (out.returncode, out.stderr) == (1, f"netscand: cannot bind {sock}: Address already in use\n")
    sock.unlink()
    for name in ("netscand.db-wal", "netscand.db-shm"):
        (state / name).unlink()  # SQLite would refuse them, before the certificate is reached
    out = serve()
    assert (out.returncode, out.stderr) == (1, f"netscand: TLS certificate: {state}/tls is not a directory (a link?): "
                                               "remove it, and a new certificate is made there\n")
    assert {p: _snapshot(p) for p in before} == before
    assert sorted(p.name for p in root_only.iterdir()) == ["cert.pem", "secret"]
    assert (state / "reload.json").is_symlink()  # never written through, nor chowned
