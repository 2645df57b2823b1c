"""`netscand doctor` run as a subprocess against real files, sockets, units and interfaces.

Every run is inside a fresh network namespace (only `lo`, down, unless a test adds a veth pair)
so the interface line does not depend on the machine, and doctor could not reach a network even
if it tried. SYSTEMD_UNIT_PATH points at a directory of the test's own, as systemd honours it.
"""

from __future__ import annotations

import datetime
import grp
import json
import os
import socket
import sqlite3
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import netscand
from netscand import tls
from netscand.store import Store, schema

pytestmark = pytest.mark.usefixtures("require_root")  # network namespaces, setpriv, chown

NO_NET_RAW = ["setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw"]
GRANTING_UNIT = "[Service]\nUser=nobody\nAmbientCapabilities=CAP_NET_RAW\n"
CURRENT = len(schema.STEPS)  # the schema version this netscand writes


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code = proc.returncode
        self.lines = proc.stdout.splitlines()
        self.stderr = proc.stderr

    def line(self, topic: str) -> tuple[str, str]:
        """(level, text) of the line about `topic`."""
        for line in self.lines:
            level, rest = line.split(": ", 1)
            if rest.startswith(f"{topic}: "):
                return level, rest
        raise AssertionError(f"no {topic} line in {self.lines}, stderr: {self.stderr}")


def config(tmp_path: Path, **daemon: str) -> Path:
    values = {
        "state_dir": str(tmp_path / "state"),
        "socket": str(tmp_path / "run" / "netscand.sock"),
        "socket_group": grp.getgrgid(os.getgid()).gr_name,
        "listen": "127.0.0.1:8443",
    } | daemon
    path = tmp_path / "netscand.toml"
    path.write_text("[daemon]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return path


def doctor(tmp_path: Path, cfg: Path | None = None, *, setup: str = "", prefix: list[str] | None = None) -> Run:
    units = tmp_path / "units"
    units.mkdir(exist_ok=True)
    cmd = [*(prefix or []), sys.executable, "-m", "netscand", "doctor", "--config", str(cfg or config(tmp_path))]
    proc = subprocess.run(["unshare", "--net", "sh", "-ec", f'{setup}\nexec "$@"', "sh", *cmd],
                          capture_output=True, text=True, timeout=60,
                          env=os.environ | {"SYSTEMD_UNIT_PATH": str(units)})
    for line in proc.stdout.splitlines():
        assert line.split(": ", 1)[0] in ("ok", "warn", "fail"), line
    return Run(proc)


def unit(tmp_path: Path, text: str, dropin: str = "") -> None:
    units = tmp_path / "units"
    units.mkdir(exist_ok=True)
    (units / "netscand.service").write_text("[Unit]\nDescription=netscand\n\n" + text)
    if dropin:
        (units / "netscand.service.d").mkdir()
        (units / "netscand.service.d" / "override.conf").write_text(dropin)


def certificate(directory: Path, *, valid_from_days: float = -1, valid_days: float = 365,
                key: ec.EllipticCurvePrivateKey | None = None) -> tuple[Path, Path]:
    """A self-signed certificate valid from now + valid_from_days for valid_days, and its key."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "doctor-test")])
    start = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=valid_from_days)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=valid_days)).sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def store(tmp_path: Path) -> Path:
    (tmp_path / "state").mkdir()
    path = tmp_path / "state" / "netscand.db"
    s = Store(path)
    s.create_token("ci", "scan")
    s.close()
    return path


# The whole report


def test_a_fresh_machine_is_ready(tmp_path: Path) -> None:
    run = doctor(tmp_path)
    assert run.code == 0, run.lines
    assert len(run.lines) == 6
    assert run.line("raw sockets")[0] == "ok"
    assert run.line("python")[0] == "ok"
    assert run.line("interfaces") == ("warn", "interfaces: none but loopback is up with an IPv4 address, so only "
                                              "127.0.0.0/8 can be scanned: bring one up (ip link set DEV up) and "
                                              "give it an address")
    assert run.line("socket")[0] == "ok"
    assert run.line("database") == ("ok", f"database: {tmp_path}/state/netscand.db does not exist yet; "
                                          "it will be created on first start")
    assert run.line("certificate") == ("ok", "certificate: none configured; a self-signed one will be generated in "
                                             f"{tmp_path}/state/tls on first start")


def test_a_configuration_it_cannot_use_is_a_failure(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[daemon]\nsocket_mode = 'rw'\n")
    run = doctor(tmp_path, cfg)
    assert run.code == 1
    assert run.lines == [f'fail: configuration: {cfg}: daemon.socket_mode: expected octal permissions such as "0660", '
                         'got "rw": fix it, then run doctor again']


# Capabilities


def test_a_process_without_cap_net_raw_and_no_unit_fails(tmp_path: Path) -> None:
    run = doctor(tmp_path, prefix=NO_NET_RAW)
    assert run.code == 1
    level, text = run.line("raw sockets")
    assert level == "fail" and "may not open them and no netscand.service is installed" in text


def test_a_unit_granting_cap_net_raw_is_enough(tmp_path: Path) -> None:
    unit(tmp_path, GRANTING_UNIT)
    level, text = doctor(tmp_path, prefix=NO_NET_RAW).line("raw sockets")
    assert level == "ok" and f"{tmp_path}/units/netscand.service gives the daemon CAP_NET_RAW" in text
    assert "this process may not open them" in text


def test_a_unit_without_cap_net_raw_fails_even_for_root(tmp_path: Path) -> None:
    unit(tmp_path, "[Service]\nUser=nobody\nExecStart=/usr/bin/netscand serve\n")
    run = doctor(tmp_path)
    assert run.code == 1
    level, text = run.line("raw sockets")
    assert level == "fail" and "does not give the daemon CAP_NET_RAW" in text


def test_a_drop_in_can_grant_what_the_unit_does_not(tmp_path: Path) -> None:
    unit(tmp_path, "[Service]\nUser=nobody\n", dropin="[Service]\nAmbientCapabilities=CAP_NET_BIND_SERVICE \\\n"
                                                      "    CAP_NET_RAW\n")
    assert doctor(tmp_path).line("raw sockets")[0] == "ok"


def test_a_bounding_set_without_cap_net_raw_takes_it_away(tmp_path: Path) -> None:
    unit(tmp_path, GRANTING_UNIT + "CapabilityBoundingSet=~CAP_NET_RAW CAP_SYS_ADMIN\n")
    assert doctor(tmp_path).line("raw sockets")[0] == "fail"


def test_a_unit_user_that_does_not_exist_fails(tmp_path: Path) -> None:
    unit(tmp_path, "[Service]\nUser=netscand-doctor-nobody\nAmbientCapabilities=CAP_NET_RAW\n")
    level, text = doctor(tmp_path).line("raw sockets")
    assert level == "fail" and "user 'netscand-doctor-nobody', which does not exist" in text


# Python: what the daemon's user must read after the switch


def test_a_package_the_daemon_user_cannot_read_fails(tmp_path: Path) -> None:
    closed = Path(tempfile.mkdtemp(prefix="doctor-", dir="/tmp"))  # pytest's own is closed to everyone
    try:
        shutil.copytree(Path(netscand.__file__).parent, closed / "lib" / "netscand")
        closed.chmod(0o700)
        # From /, so that the copy is the netscand imported, not the checkout in the working directory.
        run = doctor(tmp_path, prefix=["env", "-C", "/", f"PYTHONPATH={closed / 'lib'}"])
    finally:
        shutil.rmtree(closed)
    assert run.code == 1
    assert run.line("python") == (
        "fail", f"python: the daemon user 'netscand' cannot read {closed}/lib/netscand (needed to run netscand after "
                f"the switch): it may not enter {closed} (mode 0700, owner root:root); run netscand from a Python "
                "installation that user can read, or give it access")


def test_the_unit_user_is_the_one_checked(tmp_path: Path) -> None:
    unit(tmp_path, GRANTING_UNIT)
    assert doctor(tmp_path).line("python") == (
        "ok", f"python: user 'nobody', the daemon's, can read {os.path.realpath(sys.executable)}, its standard "
              f"library and netscand ({Path(netscand.__file__).parent})")


# Interfaces


def test_an_interface_up_with_an_address_is_listed(tmp_path: Path) -> None:
    setup = ("ip link add nsd-d0 type veth peer name nsd-d1\nip addr add 198.18.250.1/24 dev nsd-d0\n"
             "ip link set nsd-d0 up\nip link set nsd-d1 up")
    assert doctor(tmp_path, setup=setup).line("interfaces") == ("ok", "interfaces: up with IPv4: nsd-d0 198.18.250.1/24")


def test_interfaces_down_or_without_address_are_named(tmp_path: Path) -> None:
    setup = "ip link add nsd-d0 type veth peer name nsd-d1\nip addr add 198.18.250.1/24 dev nsd-d0\nip link set nsd-d1 up"
    level, text = doctor(tmp_path, setup=setup).line("interfaces")
    assert level == "warn"
    assert "nsd-d0 is down" in text and "nsd-d1 has no carrier" in text  # a veth runs only with its peer up


# The Unix socket


def test_a_live_socket_as_configured_is_fine(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "run" / "netscand.sock"))
    os.chmod(tmp_path / "run" / "netscand.sock", 0o660)
    try:
        assert doctor(tmp_path).line("socket")[0] == "ok"
    finally:
        listener.close()


def test_a_socket_with_another_mode_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "run" / "netscand.sock"))
    os.chmod(tmp_path / "run" / "netscand.sock", 0o600)
    try:
        level, text = doctor(tmp_path).line("socket")
    finally:
        listener.close()
    assert level == "warn" and "has mode 0600 and group" in text and "not 0660" in text


def test_a_file_in_the_way_of_the_socket_fails(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "netscand.sock").write_text("not a socket")
    run = doctor(tmp_path)
    assert run.code == 1
    assert run.line("socket") == ("fail", f"socket: {tmp_path}/run/netscand.sock exists and is not a socket: "
                                          "remove it or set daemon.socket elsewhere")


def test_a_missing_group_and_a_world_open_mode_are_warnings(tmp_path: Path) -> None:
    level, text = doctor(tmp_path, config(tmp_path, socket_group="netscand-doctor-none", socket_mode="0666")).line("socket")
    assert level == "warn"
    assert "group 'netscand-doctor-none' does not exist" in text
    assert "mode 0666 lets every local user use the API without a token" in text


def test_a_socket_directory_the_daemon_user_cannot_write_fails(tmp_path: Path) -> None:
    unit(tmp_path, GRANTING_UNIT)
    (tmp_path / "run").mkdir(mode=0o755)
    level, text = doctor(tmp_path).line("socket")
    assert level == "fail" and f"{tmp_path}/run is not writable by nobody, the daemon's user" in text


def test_a_runtime_directory_systemd_makes_is_fine(tmp_path: Path) -> None:
    unit(tmp_path, GRANTING_UNIT + "RuntimeDirectory=netscand-doctor-test\n")
    cfg = config(tmp_path, socket="/run/netscand-doctor-test/netscand.sock")
    assert doctor(tmp_path, cfg).line("socket")[0] == "ok"


def test_a_missing_directory_the_daemon_user_cannot_make_is_a_warning(tmp_path: Path) -> None:
    unit(tmp_path, GRANTING_UNIT)
    level, text = doctor(tmp_path, config(tmp_path, socket="/run/netscand-doctor-test/netscand.sock")).line("socket")
    assert level == "warn"
    assert "/run/netscand-doctor-test does not exist and nobody, the daemon's user, cannot create it" in text


# The database


def test_an_intact_database_is_checked_without_leaving_files(tmp_path: Path) -> None:
    path = store(tmp_path)
    before = sorted(os.listdir(path.parent))
    assert doctor(tmp_path).line("database") == (
        "ok", f"database: {path} is intact, schema version {CURRENT} (current)")
    assert sorted(os.listdir(path.parent)) == before == ["netscand.db"]


def test_a_database_in_use_is_read_through_its_wal(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    s = Store(tmp_path / "state" / "netscand.db")
    try:
        s.create_token("live", "read")
        assert (tmp_path / "state" / "netscand.db-wal").exists()
        assert doctor(tmp_path).line("database")[0] == "ok"
    finally:
        s.close()


def test_a_file_that_is_not_a_database_fails(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "netscand.db").write_bytes(os.urandom(8192))
    run = doctor(tmp_path)
    assert run.code == 1
    assert run.line("database") == ("fail", f"database: {tmp_path}/state/netscand.db cannot be read (file is not an "
                                            "SQLite database): restore it from a backup, or move it aside and a new "
                                            "one will be created")


def test_a_truncated_database_fails(tmp_path: Path) -> None:
    path = store(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    level, text = doctor(tmp_path).line("database")
    assert level == "fail" and "(database file is corrupt)" in text


def test_an_index_that_disagrees_with_its_table_fails(tmp_path: Path) -> None:
    path = store(tmp_path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA writable_schema=ON")  # the index now claims to cover another column
    conn.execute("UPDATE sqlite_master SET sql = replace(sql, 'ON tokens (name)', 'ON tokens (scope)') "
                 "WHERE name = 'tokens_active_name'")
    conn.commit()
    conn.close()
    level, text = doctor(tmp_path).line("database")
    assert level == "fail" and "is damaged (integrity check: row 1 missing from index tokens_active_name)" in text


def test_a_database_from_a_newer_netscand_fails(tmp_path: Path) -> None:
    path = store(tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                     "VALUES ('netscand', 'm999_future', '2030-01-01')")
    conn.close()
    assert doctor(tmp_path).line("database") == (
        "fail", f"database: {path} was written by a newer netscand (migration m999_future): upgrade netscand")


def test_an_older_schema_is_upgraded_on_start(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    path = tmp_path / "state" / "netscand.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE older (x)")
    conn.close()
    assert doctor(tmp_path).line("database") == (
        "ok", f"database: {path} is intact, schema version 0; the next start upgrades it to {CURRENT}")


def test_a_state_directory_systemd_makes_is_fine(tmp_path: Path) -> None:
    unit(tmp_path, GRANTING_UNIT + "StateDirectory=netscand-doctor-test\n")
    cfg = config(tmp_path, state_dir="/var/lib/netscand-doctor-test")
    assert doctor(tmp_path, cfg).line("database") == (
        "ok", "database: /var/lib/netscand-doctor-test/netscand.db does not exist yet; it will be created on first start")


def test_a_database_the_daemon_user_cannot_write_fails(tmp_path: Path) -> None:
    unit(tmp_path, GRANTING_UNIT)
    path = store(tmp_path)
    level, text = doctor(tmp_path).line("database")
    assert level == "fail"
    assert f"the state directory {path.parent} is not writable by nobody" in text
    assert f"{path} is not writable by nobody, the daemon's user" in text


# The certificate


def test_a_valid_configured_certificate(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path / "tls", valid_days=400)
    until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=399)
    run = doctor(tmp_path, config(tmp_path, tls_cert=str(cert), tls_key=str(key)))
    assert run.line("certificate") == ("ok", f"certificate: {cert} is valid until {until:%Y-%m-%d} and {key} matches it")


def test_a_generated_certificate_is_checked_too(tmp_path: Path) -> None:
    (tmp_path / "state" / "tls").mkdir(parents=True)
    made = tls.ensure("", "", tmp_path / "state")
    level, text = doctor(tmp_path).line("certificate")
    assert level == "ok" and f"certificate: {made.cert} is valid until" in text


def test_an_expired_certificate_fails(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path / "tls", valid_from_days=-30, valid_days=20)
    run = doctor(tmp_path, config(tmp_path, tls_cert=str(cert), tls_key=str(key)))
    assert run.code == 1
    level, text = run.line("certificate")
    assert level == "fail" and f"{cert} expired on" in text and "replace it (daemon.tls_cert, daemon.tls_key)" in text


def test_an_expired_generated_certificate_is_to_be_deleted(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path / "state" / "tls", valid_from_days=-30, valid_days=20)
    level, text = doctor(tmp_path).line("certificate")
    assert level == "fail" and f"delete {cert} and {key}, and a new one is generated on the next start" in text


def test_a_certificate_close_to_expiry_is_a_warning(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path / "tls", valid_from_days=-300, valid_days=310)
    level, text = doctor(tmp_path, config(tmp_path, tls_cert=str(cert), tls_key=str(key))).line("certificate")
    assert level == "warn" and "in 9 days" in text


def test_a_certificate_not_valid_yet_fails(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path / "tls", valid_from_days=2)
    level, text = doctor(tmp_path, config(tmp_path, tls_cert=str(cert), tls_key=str(key))).line("certificate")
    assert level == "fail" and "check this machine's clock" in text


def test_a_key_of_another_certificate_fails(tmp_path: Path) -> None:
    cert, _ = certificate(tmp_path / "a")
    _, other_key = certificate(tmp_path / "b")
    run = doctor(tmp_path, config(tmp_path, tls_cert=str(cert), tls_key=str(other_key)))
    assert run.line("certificate") == ("fail", f"certificate: the key {other_key} does not belong to the "
                                               f"certificate {cert}: configure the pair")


def test_a_passphrase_protected_key_fails(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert, key_path = certificate(tmp_path / "tls", key=key)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.BestAvailableEncryption(b"secret")))
    level, text = doctor(tmp_path, config(tmp_path, tls_cert=str(cert), tls_key=str(key_path))).line("certificate")
    assert level == "fail" and "protected by a passphrase" in text


def test_a_missing_certificate_fails(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    run = doctor(tmp_path, config(tmp_path, tls_cert=str(missing)))
    assert run.line("certificate") == ("fail", f"certificate: cannot read {missing} (No such file or directory): "
                                               "fix daemon.tls_cert and daemon.tls_key")


def test_a_key_the_daemon_user_cannot_read_fails(tmp_path: Path) -> None:
    unit(tmp_path, GRANTING_UNIT)
    cert, key = certificate(tmp_path / "tls")
    key.chmod(0o600)
    level, text = doctor(tmp_path, config(tmp_path, tls_cert=str(cert), tls_key=str(key))).line("certificate")
    assert level == "fail" and f"{key} is not readable by nobody, the daemon's user" in text


def test_no_certificate_is_needed_without_https(tmp_path: Path) -> None:
    assert doctor(tmp_path, config(tmp_path, listen="")).line("certificate") == (
        "ok", "certificate: none needed, the HTTPS listener is off (daemon.listen is empty)")
