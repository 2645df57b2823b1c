"""The Debian package, built for real with packaging/build-deb (dpkg-buildpackage, about half a
minute; pip fetches the pinned wheels from the configured index, PyPI by default).

The built .deb is listed, linted, unpacked with `dpkg-deb -x` and run from there, then installed,
reinstalled and purged with dpkg in a throwaway copy-on-write view of this machine's root file
system. The unpacked venv works where it lands because a venv finds its packages from its own
pyvenv.cfg: running its bin/python runs from the unpacked tree, no PYTHONPATH involved. Only
the console scripts' shebang (#!/opt/netscand/bin/python3.11) needs the real /opt/netscand, so
the unpacked scripts are run through the unpacked interpreter, and the installed ones directly.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import netscand

pytestmark = pytest.mark.usefixtures("require_root")  # dpkg, mount and network namespaces

REPO = Path(__file__).resolve().parents[2]
# Whatever units systemd/ holds when the package is built are shipped; none yet is not an error.
UNITS = sorted(p.name for p in (REPO / "systemd").glob("*") if p.suffix in (".service", ".socket"))
PYTHON_LINKS = {"opt/netscand/bin/python": "python3.11", "opt/netscand/bin/python3": "python3.11",
                "opt/netscand/bin/python3.11": "/usr/bin/python3.11"}


def run(cmd: list[str], timeout: float = 120, env: dict[str, str] | None = None,
        cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    run([str(REPO / "packaging" / "build-deb"), str(out)], timeout=900)
    (built,) = out.glob("netscand_*.deb")
    return built


@pytest.fixture(scope="module")
def contents(deb: Path) -> dict[str, str]:
    """Path (without ./) to its symlink target, or "" for files and directories."""
    listing = run(["dpkg-deb", "--contents", str(deb)]).stdout.splitlines()
    entries = (line.split(None, 5)[5].removeprefix("./").rstrip("/") for line in listing)
    return {path: target for path, _, target in (e.partition(" -> ") for e in entries)}


def test_the_package_holds_the_venv_commands_config_and_system_files(contents: dict[str, str]) -> None:
    for path in ("opt/netscand/bin/netscand", "opt/netscand/bin/netscanctl", "opt/netscand/pyvenv.cfg",
                 "opt/netscand/lib/python3.11/site-packages/netscand/cli/doctor.py",
                 "opt/netscand/lib/python3.11/site-packages/netscand/data/top-ports.txt",
                 "etc/netscand/netscand.toml", "usr/lib/sysusers.d/netscand.conf",
                 "usr/lib/tmpfiles.d/netscand.conf", "usr/share/doc/netscand/copyright",
                 "usr/share/doc/netscand/README.md",
                 "usr/share/lintian/overrides/netscand"):
        assert path in contents, path
    assert contents["usr/bin/netscand"] == "/opt/netscand/bin/netscand"
    assert contents["usr/bin/netscanctl"] == "/opt/netscand/bin/netscanctl"
    for unit in UNITS:
        assert f"lib/systemd/system/{unit}" in contents, unit
    bin_dir = {p: t for p, t in contents.items() if p.startswith("opt/netscand/bin/")}
    assert bin_dir == {"opt/netscand/bin/netscand": "", "opt/netscand/bin/netscanctl": ""} | PYTHON_LINKS
    # Bytecode is compiled by postinst, and pip has no place in the service's environment.
    assert not [p for p in contents if "__pycache__" in p or "/site-packages/pip" in p]


def test_the_control_data(deb: Path) -> None:
    fields = run(["dpkg-deb", "--field", str(deb), "Package", "Version", "Architecture", "Depends"]).stdout
    assert f"Version: {netscand.__version__}\n" in fields
    assert "python3.11" in fields and "systemd-sysusers | adduser" in fields
    assert run(["dpkg-deb", "--info", str(deb), "conffiles"]).stdout.split() == ["/etc/netscand/netscand.toml"]


def test_lintian_finds_no_errors(deb: Path) -> None:
    """Errors fail; packaging/README.md lists the overridden tags and why."""
    proc = subprocess.run(["lintian", "--fail-on", "error", str(deb)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not [line for line in proc.stdout.splitlines() if line.startswith("E:")], proc.stdout


@pytest.fixture(scope="module")
def unpacked(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unpacked")
    run(["dpkg-deb", "--extract", str(deb), str(root)])
    return root


def test_the_unpacked_venv_runs_netscand_from_itself(unpacked: Path) -> None:
    venv = unpacked / "opt" / "netscand"
    assert (venv / "bin" / "netscand").read_text().startswith("#!/opt/netscand/bin/python3.11\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    version = run([str(venv / "bin" / "python"), str(venv / "bin" / "netscand"), "--version"], env=env, cwd="/")
    assert version.stdout.strip() == f"netscand {netscand.__version__}"
    # The imports come from the unpacked tree, extension modules included (dh_strip ran on them).
    where = run([str(venv / "bin" / "python"), "-c",
                 "import netscand, uvloop.loop, httptools, orjson, _cffi_backend, sqlite_utils, pyroute2; "
                 "from cryptography.hazmat.bindings import _rust; print(netscand.__file__)"], env=env, cwd="/")
    assert where.stdout.strip() == f"{venv}/lib/python3.11/site-packages/netscand/__init__.py"


def test_the_unpacked_doctor_checks_a_configuration(unpacked: Path, tmp_path: Path) -> None:
    venv = unpacked / "opt" / "netscand"
    cfg = tmp_path / "netscand.toml"
    cfg.write_text(f'[daemon]\nstate_dir = "{tmp_path}/state"\nsocket = "{tmp_path}/run/netscand.sock"\n'
                   'socket_group = "root"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["SYSTEMD_UNIT_PATH"] = str(tmp_path)  # no unit: this machine's own would be judged otherwise
    proc = subprocess.run(["unshare", "--net", str(venv / "bin" / "python"), str(venv / "bin" / "netscand"),
                           "doctor", "--config", str(cfg)], capture_output=True, text=True, timeout=120, env=env,
                          cwd="/")
    # Unpacked in pytest's directory, which only root may enter: the daemon's user could not run it.
    assert proc.returncode == 1, proc.stderr
    assert [line.split(": ")[:2] for line in proc.stdout.splitlines()] == [
        ["ok", "raw sockets"], ["fail", "python"], ["warn", "interfaces"], ["ok", "socket"], ["ok", "database"],
        ["ok", "certificate"]]
    assert f"cannot read {venv}/lib/python3.11/site-packages/netscand (needed to run netscand after the switch)" \
        in proc.stdout


class Overlay:
    """A copy-on-write view of / in a private mount, network and PID namespace: dpkg installs
    into it for real, every write lands in `upper`, and this machine is left as it was. The
    view persists from one `sh` call to the next."""

    def __init__(self, base: Path) -> None:
        self.upper, self.work, self.root = base / "upper", base / "work", base / "root"
        for d in (self.upper, self.work, self.root):
            d.mkdir()

    def sh(self, script: str) -> str:
        mount = (f"mount --make-rprivate / && mount -t overlay overlay "
                 f"-o lowerdir=/,upperdir={self.upper},workdir={self.work} {self.root} && "
                 f"mount -t proc proc {self.root}/proc && mount --rbind /dev {self.root}/dev && "
                 f'exec chroot {self.root} sh -ec "$0"')
        return run(["unshare", "--mount", "--net", "--pid", "--fork", "sh", "-c", mount, script],
                   env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}).stdout


@pytest.fixture
def overlay(tmp_path: Path) -> Overlay:
    """A view of this machine as a fresh one: no netscand user, state or runtime directory (which
    someone's test or demo may have made here). Installing must not start a daemon, as in a
    chroot: policy-rc.d forbids it, and systemd does not run in the view anyway."""
    o = Overlay(tmp_path)
    o.sh("printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d\n"
         "! getent passwd netscand >/dev/null || userdel netscand\n"
         "! getent group netscand >/dev/null || groupdel netscand\n"
         "rm -rf /var/lib/netscand /run/netscand")
    return o


GONE_AFTER_PURGE = ["/opt/netscand", "/usr/bin/netscand", "/usr/bin/netscanctl", "/etc/netscand",
                    "/var/lib/netscand", "/run/netscand", "/usr/lib/sysusers.d/netscand.conf",
                    "/usr/lib/tmpfiles.d/netscand.conf", *(f"/lib/systemd/system/{u}" for u in UNITS)]
WITHOUT_SYSTEMD = "mv /usr/bin/systemd-sysusers /usr/bin/systemd-tmpfiles /root/"


@pytest.mark.parametrize("tools", ["systemd", "adduser"])
def test_install_reinstall_and_purge(deb: Path, overlay: Overlay, tools: str) -> None:
    """With systemd's sysusers and tmpfiles, and with adduser where they are missing."""
    if tools == "adduser":
        overlay.sh(WITHOUT_SYSTEMD)
    installed = overlay.sh(
        f"dpkg -i {deb} >/dev/null\n"
        "for p in /var/lib/netscand /run/netscand /etc/netscand/netscand.toml; do\n"
        "    stat -c '%n %a %U:%G' $p 2>/dev/null || echo $p missing\n"
        "done\n"
        "getent passwd netscand | cut -d: -f1,6,7\ngetent group netscand | cut -d: -f1\n"
        "netscand --version\n"
        "find /opt/netscand -name '*.pyc' | grep -c . || true\n"
        "ps -e -o comm= | grep -c '^netscand' || true\n")
    # The unit's RuntimeDirectory= makes /run/netscand at each start, and removes it at stop.
    lines = installed.splitlines()
    compiled = int(lines.pop(6))
    assert lines == ["/var/lib/netscand 750 netscand:netscand", "/run/netscand missing",
                     "/etc/netscand/netscand.toml 644 root:root",
                     "netscand:/var/lib/netscand:/usr/sbin/nologin", "netscand", f"netscand {netscand.__version__}",
                     "0"]  # no netscand process was started
    assert compiled > 100  # postinst compiled the venv

    # The installed doctor, as root, on the packaged configuration: no failure.
    report = overlay.sh("netscand doctor --config /etc/netscand/netscand.toml")
    assert not [line for line in report.splitlines() if line.startswith("fail:")], report

    # Reinstalling runs prerm upgrade and postinst configure again; an edited conffile is kept.
    overlay.sh(f"echo '# edited' >> /etc/netscand/netscand.toml && dpkg -i --force-confold {deb} >/dev/null")
    assert overlay.sh("tail -n 1 /etc/netscand/netscand.toml") == "# edited\n"

    # State the daemon would have made, and a file an admin put in /etc/netscand, go with purge.
    overlay.sh("netscand token create --name ci --config /etc/netscand/netscand.toml >/dev/null\n"
               "touch /etc/netscand/admin-cert.pem\ndpkg --purge netscand >/dev/null")
    left = overlay.sh(
        "".join(f"[ ! -e {p} ] || echo {p}\n" for p in GONE_AFTER_PURGE)
        + "find /etc/systemd /lib/systemd /usr/lib/systemd /var/lib/systemd -name '*netscand*'\n"
        + "dpkg-query --show --showformat='${db:Status-Status}' netscand 2>/dev/null || true\n")
    assert left == "not-installed" or left == "", left
    # Debian keeps system users on purge: files elsewhere may still belong to the uid.
    assert overlay.sh("getent passwd netscand | cut -d: -f1") == "netscand\n"
