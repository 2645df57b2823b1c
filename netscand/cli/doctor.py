"""`netscand doctor`: checks what the daemon needs, one line each: `ok|warn|fail: what to do`.

Doctor only looks. Its one socket of the network kind is an AF_PACKET socket opened with
protocol 0 (it receives nothing) and closed unused, to learn whether raw sockets are allowed;
it never sends a packet, and never leaves a file behind (not even SQLite's -wal and -shm).

What a check reads with (netlink, SQLite, X.509, the daemon's paths) is imported by that check:
`netscand --help` and the other subcommands register this one without it (start-up cost).
"""

from __future__ import annotations

import argparse
import datetime
import grp
import os
import pwd
import socket
import sqlite3
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import netscand
from netscand import config, preload, privileges
from netscand.cli.serve import add_config_flags, load

OK, WARN, FAIL = "ok", "warn", "fail"
UNIT = "netscand.service"
# systemd's own search order for system units, highest priority first.
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
             "/lib/systemd/system", "/usr/lib/systemd/system")
RENEW_DAYS = 30  # certificate expiry closer than this is worth a warning
ARPHRD_LOOPBACK = 772
IFF_UP, IFF_RUNNING = 0x1, 0x40
READ, WRITE, SEARCH = 4, 2, 1  # permission bits, as chmod counts them


@dataclass(frozen=True)
class Finding:
    level: str
    text: str


@dataclass(frozen=True)
class Unit:
    path: Path
    service: dict[str, list[str]]  # every assignment in [Service], in order, drop-ins after the unit

    def values(self, key: str) -> list[str]:
        return self.service.get(key, [])


@dataclass(frozen=True)
class Account:
    """Who the daemon runs as: permissions are checked for it, not for whoever runs doctor."""

    name: str
    uid: int
    gids: frozenset[int]

    def may(self, path: Path, bits: int) -> bool:
        if self.uid == 0:
            return True
        st = path.stat()
        shift = 6 if st.st_uid == self.uid else 3 if st.st_gid in self.gids else 0
        return (st.st_mode >> shift) & bits == bits


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check capabilities, interfaces, socket, database and certificate")
    add_config_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from netscand import daemon  # for its database's path: see the module's docstring

    try:
        cfg = load(args)
    except config.ConfigError as exc:
        print(f"{FAIL}: configuration: {exc}: fix it, then run doctor again")
        return 1
    unit = find_unit()
    account = (_account(_unit_user(unit)) if unit else None) or _current_account()
    made = systemd_directories(unit)
    findings = [
        capabilities(unit),
        python(cfg.daemon, unit),
        interfaces(),
        unix_socket(cfg.daemon, account, made),
        database(daemon.db_path(cfg), account, made),
        certificate(cfg.daemon, Path(cfg.daemon.state_dir), account),
    ]
    for f in findings:
        print(f"{f.level}: {f.text}")
    return 1 if any(f.level == FAIL for f in findings) else 0


# The systemd unit


def unit_dirs() -> list[Path]:
    # systemd honours SYSTEMD_UNIT_PATH, a trailing ':' appending its defaults; so does doctor.
    given = os.environ.get("SYSTEMD_UNIT_PATH")
    if given is None:
        return [Path(d) for d in UNIT_DIRS]
    return [Path(d) for d in given.split(":") if d] + ([Path(d) for d in UNIT_DIRS] if given.endswith(":") else [])


def find_unit() -> Unit | None:
    dirs = unit_dirs()
    main = next((d / UNIT for d in dirs if (d / UNIT).is_file()), None)
    if main is None:
        return None
    # A drop-in in a higher-priority directory replaces one of the same name; all apply by name.
    dropins = {p.name: p for d in reversed(dirs) for p in (d / f"{UNIT}.d").glob("*.conf")}
    service: dict[str, list[str]] = {}
    for path in [main, *(dropins[name] for name in sorted(dropins))]:
        for key, value in _service_section(path.read_text()):
            service.setdefault(key, []).append(value)
    return Unit(main, service)


def _service_section(text: str) -> list[tuple[str, str]]:
    pairs, section, pending = [], "", ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and "=" in line and not line.startswith(("#", ";")):
            key, value = line.split("=", 1)
            pairs.append((key.strip(), value.strip()))
    return pairs


def _has_net_raw(assignments: list[str], unset: bool) -> bool:
    """Whether a capability list setting ends up holding CAP_NET_RAW, by systemd's rules: lines
    add to the set, a `~` line keeps all but its capabilities, an empty line empties it."""
    has: bool | None = None
    for value in assignments:
        words = value.split()
        named = "CAP_NET_RAW" in {w.lstrip("~").upper() for w in words}
        if not words:
            has = False
        elif words[0].startswith("~"):
            has = (True if has is None else has) and not named
        else:
            has = bool(has) or named
    return unset if has is None else has


def systemd_directories(unit: Unit | None) -> frozenset[Path]:
    """What systemd makes and hands to the daemon's user at each start (RuntimeDirectory=, ...)."""
    if unit is None:
        return frozenset()
    roots = {"RuntimeDirectory": Path("/run"), "StateDirectory": Path("/var/lib")}
    return frozenset(root / name for key, root in roots.items() for value in unit.values(key) for name in value.split())


def _unit_user(unit: Unit) -> str:
    return (unit.values("User") or ["root"])[-1]


def _account(name: str) -> Account | None:
    try:
        pw = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        return None
    gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if pw.pw_name in g.gr_mem}
    return Account(pw.pw_name, pw.pw_uid, frozenset(gids))


def _current_account() -> Account:
    uid = os.geteuid()
    return Account(privileges.user_name(uid), uid, frozenset({os.getegid(), *os.getgroups()}))


# The checks


def capabilities(unit: Unit | None) -> Finding:
    if unit is not None and _account(_unit_user(unit)) is None:
        return Finding(FAIL, f"raw sockets: {unit.path} runs the daemon as user '{_unit_user(unit)}', which does not "
                             "exist: create it (systemd-sysusers does, with the package's sysusers.d entry)")
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()  # protocol 0: receives nothing
        here = True
    except PermissionError:
        here = False
    if unit is None:
        if here:
            return Finding(OK, "raw sockets: this process may open them (root or CAP_NET_RAW), "
                               "so a daemon or scan started like it can send probes")
        return Finding(FAIL, f"raw sockets: this process may not open them and no {UNIT} is installed: "
                             "run netscand as root, or install the package, whose unit grants CAP_NET_RAW")
    root = _unit_user(unit) in ("root", "0")
    granted = _has_net_raw(unit.values("CapabilityBoundingSet"), unset=True) and (
        root or _has_net_raw(unit.values("AmbientCapabilities"), unset=False))
    if not granted:
        return Finding(FAIL, f"raw sockets: {unit.path} does not give the daemon CAP_NET_RAW, so it cannot scan: "
                             "set AmbientCapabilities=CAP_NET_RAW (and keep it in any CapabilityBoundingSet=) "
                             "in its [Service] section")
    if here:
        return Finding(OK, f"raw sockets: {unit.path} gives the daemon CAP_NET_RAW, and this process may open them too")
    return Finding(OK, f"raw sockets: {unit.path} gives the daemon CAP_NET_RAW (this process may not open them: "
                       "one-shot `netscand scan` needs root)")


def python(d: config.DaemonConfig, unit: Unit | None) -> Finding:
    """Whether the user the daemon ends up as can read the interpreter and the package: started
    as root (by hand, or by a unit without User=), the daemon switches to daemon.user."""
    starter = _unit_user(unit) if unit else privileges.user_name(os.geteuid())
    name = d.user if starter in ("root", "0") else starter
    try:
        pw = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        return Finding(FAIL, f"python: the daemon would run as user '{name}', which does not exist: create it "
                             f"(useradd --system --user-group --no-create-home --shell /usr/sbin/nologin {name})")
    preload.load()
    try:
        why = preload.refusal(privileges.Account(pw.pw_name, pw.pw_uid, pw.pw_gid))
    except privileges.PrivilegeError:
        return Finding(WARN, f"python: only root can tell whether user '{pw.pw_name}', the daemon's, can read "
                             "this Python and netscand: run doctor as root")
    if why:
        return Finding(FAIL, f"python: {why}")
    return Finding(OK, f"python: user '{pw.pw_name}', the daemon's, can read {os.path.realpath(sys.executable)}, "
                       f"its standard library and netscand ({Path(netscand.__file__).parent})")


def interfaces() -> Finding:
    from pyroute2 import IPRoute  # see the module's docstring

    with IPRoute() as ipr:
        links = {link["index"]: link for link in ipr.get_links()}
        v4: dict[int, list[str]] = {}
        for a in ipr.get_addr(family=socket.AF_INET):
            v4.setdefault(a["index"], []).append(f"{a.get('address')}/{a['prefixlen']}")
    usable, other = [], []
    for index, link in sorted(links.items()):
        if link["ifi_type"] == ARPHRD_LOOPBACK:
            continue
        name = link.get("ifname")
        if not link["flags"] & IFF_UP:
            other.append(f"{name} is down")
        elif not link["flags"] & IFF_RUNNING:
            other.append(f"{name} has no carrier")
        elif index not in v4:
            other.append(f"{name} has no IPv4 address")
        else:
            usable.append(f"{name} {', '.join(v4[index])}")
    if usable:
        return Finding(OK, f"interfaces: up with IPv4: {'; '.join(usable)}")
    found = f" ({', '.join(other)})" if other else ""
    return Finding(WARN, f"interfaces: none but loopback is up with an IPv4 address{found}, so only 127.0.0.0/8 "
                         "can be scanned: bring one up (ip link set DEV up) and give it an address")


def unix_socket(d: config.DaemonConfig, account: Account, made: frozenset[Path]) -> Finding:
    path, mode = Path(d.socket), int(d.socket_mode, 8)
    issues: list[Finding] = []
    try:
        gid: int | None = grp.getgrnam(d.socket_group).gr_gid
    except KeyError:
        gid = None
        issues.append(Finding(WARN, f"group '{d.socket_group}' does not exist, so the socket keeps the daemon's own "
                                    f"group: create it (groupadd --system {d.socket_group}) or set daemon.socket_group"))
    if mode & 0o006:
        issues.append(Finding(WARN, f"mode {d.socket_mode} lets every local user use the API without a token: "
                                    "set daemon.socket_mode to 0660"))
    if path.is_socket():
        st = path.lstat()
        if stat.S_IMODE(st.st_mode) != mode or (gid is not None and st.st_gid != gid):
            issues.append(Finding(WARN, f"{path} has mode {stat.S_IMODE(st.st_mode):04o} and group "
                                        f"{privileges.group_name(st.st_gid)}, not {d.socket_mode} and {d.socket_group} as "
                                        "configured: restart netscand to recreate it"))
    elif path.exists() or path.is_symlink():
        issues.append(Finding(FAIL, f"{path} exists and is not a socket: remove it or set daemon.socket elsewhere"))
    else:
        issues.extend(_creatable(path.parent, account, made, "the socket's directory"))
    if not issues:
        return Finding(OK, f"socket: {path} (mode {d.socket_mode}, group {d.socket_group}) can be made as configured")
    return Finding(_worst(issues), "socket: " + "; ".join(i.text for i in issues))


def _creatable(directory: Path, account: Account, made: frozenset[Path], what: str) -> list[Finding]:
    """Whether `account` can create files in `directory`, or create the directory itself."""
    if directory in made:
        return []
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    if not existing.is_dir():
        return [Finding(FAIL, f"{existing} is not a directory, so {what} {directory} cannot be made")]
    if account.may(existing, WRITE | SEARCH):
        return []
    if existing == directory:
        return [Finding(FAIL, f"{what} {directory} is not writable by {account.name}, the daemon's user: "
                              f"chown {account.name} {directory}")]
    return [Finding(WARN, f"{what} {directory} does not exist and {account.name}, the daemon's user, cannot create "
                          f"it: create it (systemd-tmpfiles --create does, with the package's tmpfiles.d entry)")]


def database(path: Path, account: Account, made: frozenset[Path]) -> Finding:
    from sqlite_utils import Database  # see the module's docstring

    from netscand.store import schema
    from netscand.store.errors import plain_words

    # SQLite creates its -wal and -shm files next to the database: the directory must be writable.
    issues = _creatable(path.parent, account, made, "the state directory")
    if path.exists() and not account.may(path, READ | WRITE):
        issues.append(Finding(FAIL, f"{path} is not writable by {account.name}, the daemon's user: "
                                    f"chown {account.name} {path}"))
    if issues:
        return Finding(_worst(issues), "database: " + "; ".join(i.text for i in issues))
    if not path.exists():
        return Finding(OK, f"database: {path} does not exist yet; it will be created on first start")
    if not os.access(path, os.R_OK):
        return Finding(WARN, f"database: {path} is not readable by this user: run doctor as root to check it")
    # A read-only connection to a WAL database still creates its -wal and -shm files, which,
    # made by root, the daemon could not open. Without a -wal file nobody is writing, and
    # immutable=1 reads the database file alone.
    live = Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro{'' if live else '&immutable=1'}", uri=True)
    except sqlite3.Error as exc:
        return Finding(FAIL, f"database: cannot open {path} ({plain_words(exc)})")
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        applied = [m.name for m in schema.MIGRATIONS.applied(Database(conn))]
    except sqlite3.Error as exc:
        return Finding(FAIL, f"database: {path} cannot be read ({plain_words(exc)}): restore it from a backup, "
                             "or move it aside and a new one will be created")
    finally:
        conn.close()
    if problems != ["ok"]:
        return Finding(FAIL, f"database: {path} is damaged (integrity check: {problems[0]}): restore it from a "
                             "backup, or move it aside and a new one will be created")
    known = [step.__name__ for step in schema.STEPS]
    newer = [name for name in applied if name not in known]
    if newer:
        return Finding(FAIL, f"database: {path} was written by a newer netscand (migration {newer[0]}): upgrade netscand")
    if len(applied) < len(known):
        return Finding(OK, f"database: {path} is intact, schema version {len(applied)}; "
                           f"the next start upgrades it to {len(known)}")
    return Finding(OK, f"database: {path} is intact, schema version {len(applied)} (current)")


def certificate(d: config.DaemonConfig, state: Path, account: Account) -> Finding:
    from cryptography import x509  # see the module's docstring
    from cryptography.hazmat.primitives import serialization

    if not d.listen:
        return Finding(OK, "certificate: none needed, the HTTPS listener is off (daemon.listen is empty)")
    if d.tls_cert:
        cert, key = Path(d.tls_cert), Path(d.tls_key or d.tls_cert)
        remedy = "replace it (daemon.tls_cert, daemon.tls_key)"
    else:
        cert, key = state / "tls" / "cert.pem", state / "tls" / "key.pem"
        if not (cert.exists() and key.exists()):
            return Finding(OK, f"certificate: none configured; a self-signed one will be generated in "
                               f"{cert.parent} on first start")
        remedy = f"delete {cert} and {key}, and a new one is generated on the next start"
    try:
        loaded = x509.load_pem_x509_certificate(cert.read_bytes())
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except OSError as exc:
        return Finding(FAIL, f"certificate: cannot read {exc.filename} ({exc.strerror}): fix daemon.tls_cert and daemon.tls_key")
    except TypeError:
        return Finding(FAIL, f"certificate: the key {key} is protected by a passphrase, which netscand cannot enter: "
                             "store it unencrypted, readable by the daemon's user only")
    except ValueError:
        return Finding(FAIL, f"certificate: {cert} or {key} is not a PEM certificate and key: {remedy}")
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if private.public_key().public_bytes(*spki) != loaded.public_key().public_bytes(*spki):
        return Finding(FAIL, f"certificate: the key {key} does not belong to the certificate {cert}: configure the pair")
    now = datetime.datetime.now(datetime.timezone.utc)
    until = loaded.not_valid_after_utc
    if until < now:
        return Finding(FAIL, f"certificate: {cert} expired on {until:%Y-%m-%d}: {remedy}")
    if loaded.not_valid_before_utc > now:
        return Finding(FAIL, f"certificate: {cert} is not valid before {loaded.not_valid_before_utc:%Y-%m-%d %H:%M} UTC: "
                             "check this machine's clock")
    for path in (cert, key):
        if not account.may(path, READ):
            return Finding(FAIL, f"certificate: {path} is not readable by {account.name}, the daemon's user: "
                                 f"chgrp {account.name} {path} && chmod g+r {path}")
    if until - now < datetime.timedelta(days=RENEW_DAYS):
        return Finding(WARN, f"certificate: {cert} expires on {until:%Y-%m-%d}, in {(until - now).days} days: {remedy}")
    return Finding(OK, f"certificate: {cert} is valid until {until:%Y-%m-%d} and {key} matches it")


def _worst(findings: list[Finding]) -> str:
    return FAIL if any(f.level == FAIL for f in findings) else WARN
