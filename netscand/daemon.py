"""The composition root of `netscand serve`: config -> sockets -> privileges -> store ->
supervisor(children).

With oneshot.py (`netscand scan`) beside it, the only place that wires the layers together;
both build the engine's workers with compose.py. The supervisor is handed the functions its
children run, and what it tells systemd and `netscand reload`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import structlog

from netscand import compose, control, logs, preload, privileges, tls
from netscand.api.server import Connections
from netscand.config import Config, ConfigError, DaemonConfig
from netscand.engine.shm import Shared
from netscand.listeners import ListenError, bind_tcp, bind_unix, reserve_descriptors
from netscand.notify import Notifier, Receipt, start_time
from netscand.scan.limits import Limits
from netscand.scan.policy import Policy
from netscand.scan.ports import PortSpecError
from netscand.scan.profiles import discovery
from netscand.store import Store, schema
from netscand.store.connection import open_database
from netscand.supervisor import ChildSpec, Supervisor

log = structlog.get_logger()
DB_NAME = "netscand.db"
RECEIPT_NAME = "reload.json"
# What the daemon keeps in its state directory, which its user must own.
KEPT = (RECEIPT_NAME, DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", *tls.GENERATED,
        compose.CVE_DB, f"{compose.CVE_DB}-wal", f"{compose.CVE_DB}-shm")
MIGRATION_TICK = 10.0  # s between the asks for more time that systemd gets while migrations run
# Settings a reload can't apply: sockets are bound and workers forked once, by the supervisor.
RESTART_ONLY = ("state_dir", "socket", "socket_mode", "socket_group", "listen", "log_format", "user")


def db_path(cfg: Config) -> Path:
    return Path(cfg.daemon.state_dir) / DB_NAME


def receipt_path(cfg: Config) -> Path:
    return Path(cfg.daemon.state_dir) / RECEIPT_NAME


def serve(cfg: Config, reread: Callable[[], Config]) -> int:
    """Run the daemon until it is stopped; `reread` loads the config again, for reloads."""
    logs.configure(cfg.daemon.log_format)
    notifier = Notifier()
    state, listeners = _take_over(cfg)
    # As the daemon's user from here on: what fails now would fail in its children.
    prepare_store(db_path(cfg), notifier)
    load = _loader(cfg, reread)
    boot = _boot_settings(load)
    engine = compose.engine(cfg.workers, cfg.policy, lambda: reread().policy, hangup=True)
    cve_db = compose.cve_path(cfg.daemon.state_dir)
    specs = [engine.workers, _control_child(engine.shared, listeners, db_path(cfg), cve_db, load, boot)]
    receipt = receipt_path(cfg)
    reloaded = _receipt_writer(receipt)
    reloaded(0, 0, "")
    log.info("daemon.start", pid=os.getpid(), workers=cfg.workers, socket=cfg.daemon.socket,
             listen=cfg.daemon.listen or None, state_dir=str(state))
    code = Supervisor(specs, log=lambda msg: log.warning("supervisor", message=msg), notifier=notifier,
                      status=lambda: _status(engine.shared), reloaded=reloaded).run()
    # What can't be removed (a socket directory not ours, a read-only state directory) the next
    # start replaces.
    for path in (Path(cfg.daemon.socket), receipt):
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
    log.info("daemon.stop", code=code)
    return code


def prepare_store(path: Path, notifier: Notifier) -> None:
    """Create or migrate the schema before any child opens it. An upgrade's migration can take
    minutes over a large inventory, while systemd (Type=notify) waits for READY=1 no longer than
    its start timeout: so it is logged, and systemd is told and asked to wait while it runs."""
    with contextlib.closing(open_database(path)) as db:
        pending = [m.name for m in schema.MIGRATIONS.pending(db)]
    if not pending:
        Store(path).close()
        return
    log.info("store.migrating", path=str(path), migrations=pending)
    with _extending(notifier, f"migrating the database: {', '.join(pending)}"):
        Store(path).close()
    log.info("store.migrated", path=str(path))


@contextlib.contextmanager
def _extending(notifier: Notifier, status: str) -> Iterator[None]:
    """systemd told `status` and asked for three ticks more, every tick, until the body is done."""
    done = threading.Event()

    def ask() -> None:
        while True:  # once at least, however short the body
            notifier.send(f"EXTEND_TIMEOUT_USEC={int(3 * MIGRATION_TICK * 1_000_000)}", f"STATUS={status}")
            if done.wait(MIGRATION_TICK):
                return

    asking = threading.Thread(target=ask, name="migrating", daemon=True)
    asking.start()
    try:
        yield
    finally:
        done.set()
        asking.join()


def _take_over(cfg: Config) -> tuple[Path, control.Listeners]:
    """What is done as root: the account looked up, what it can't read loaded, the state
    directory and the listening sockets made; then the switch to the daemon's user."""
    account = privileges.account(cfg.daemon.user)  # before anything is made: a missing user stops us
    preload.load()  # what the daemon's user may not be able to read, and what an upgrade may replace
    if account:
        preload.check(account)  # and what it still needs to read: a missing right stops us too
    state = state_directory(cfg, account)
    unix = bind_unix(cfg.daemon.socket, int(cfg.daemon.socket_mode, 8), cfg.daemon.socket_group, account)
    tcp = bind_tcp(cfg.daemon.listen) if cfg.daemon.listen else None
    net_raw = privileges.switch(account)
    log.info("daemon.privileges", uid=os.getuid(), gid=os.getgid(), net_raw=net_raw)
    if not net_raw:
        log.warning("daemon.no_net_raw", detail="without CAP_NET_RAW the engine can't send a probe: scans will fail")
    return state, control.Listeners(unix, tcp)


def _boot_settings(load: control.Loader) -> control.Settings:
    """The settings the daemon starts with, which a control process falls back on while the
    config file is broken. Loading them makes the TLS certificate when there is none, as the
    daemon's user."""
    boot = load()
    if boot.certificate is not None:
        cert = boot.certificate
        log.info("tls.certificate", path=str(cert.cert), sha256=cert.fingerprint, generated=cert.generated)
    return boot


def _control_child(shared: Shared, listeners: control.Listeners, db: Path, cve_db: Path, load: control.Loader,
                   boot: control.Settings) -> ChildSpec:
    return ChildSpec("control", lambda i: control.main(shared, listeners, db, cve_db, load, boot),
                     heartbeat=lambda i: shared.control_row().heartbeat, ready=lambda i: _control_ready(shared),
                     reloads=lambda i: _control_reloads(shared))


def _receipt_writer(receipt: Path) -> Callable[[int, int, str], None]:
    """What the supervisor calls for every reload asked for and done: the receipt that
    `netscand reload` waits for, naming this daemon by its pid and start time."""
    started = start_time(os.getpid()) or 0

    def reloaded(requested: int, done: int, error: str) -> None:
        try:
            Receipt(os.getpid(), started, requested, done, error).write(receipt)
        except OSError as exc:  # a full or read-only state directory must not stop the daemon
            log.error("daemon.receipt_unwritable", path=str(receipt), error=str(exc))

    return reloaded


def _status(shared: Shared) -> str:
    row = shared.control_row()
    return f"scans: {row.running} running, {row.queued} queued"


def _loader(boot: Config, reread: Callable[[], Config]) -> control.Loader:
    """What the control process calls at its start and on SIGHUP: the config file read again,
    as the settings that can change while running."""
    state = Path(boot.daemon.state_dir)

    def load() -> control.Settings:
        try:
            cfg = reread()
            limits = _limits(cfg)
            unix, tcp = _connections(cfg.daemon)
            reserve_descriptors(unix.total + (tcp.total if boot.daemon.listen else 0))
        except (ConfigError, PortSpecError, ListenError) as exc:
            raise control.SettingsError(str(exc)) from None
        stale = [f"daemon.{k}" for k in RESTART_ONLY if getattr(cfg.daemon, k) != getattr(boot.daemon, k)]
        stale += ["engine.workers"] if cfg.workers != boot.workers else []
        if stale:
            log.warning("config.needs_restart", settings=stale)
        cert = None
        if boot.daemon.listen:
            try:
                cert = tls.ensure(cfg.daemon.tls_cert, cfg.daemon.tls_key, state)
                tls.server_context(cert)  # a pair that doesn't load fails here, not in the live listener
            except (OSError, ValueError) as exc:
                raise control.SettingsError(f"TLS certificate: {exc}") from None
        return control.Settings(limits, cert, unix, tcp)

    return load


def _limits(cfg: Config) -> Limits:
    e = cfg.engine
    return Limits(rate=e.rate, retries=e.retries, max_running=cfg.daemon.max_running_scans,
                  policy=Policy.from_config(cfg.policy),
                  discovery=discovery(e.ping_icmp, e.ping_syn_ports, e.ping_ack_ports),
                  max_queued_per_owner=cfg.daemon.max_queued_per_owner, retention_days=cfg.daemon.retention_days,
                  webhooks=cfg.webhooks)


def _connections(d: DaemonConfig) -> tuple[Connections, Connections]:
    """The listeners' bounds: (Unix socket, HTTPS)."""
    return (Connections(d.max_unix_connections),
            Connections(d.max_connections, d.max_connections_per_address, d.tls_handshake_timeout))


def state_directory(cfg: Config, account: privileges.Account | None) -> Path:
    """The state directory, made when missing; started by root, handed to the daemon's user
    with what root may have made in it before (by an older netscand, say). Whoever runs it
    (root on the user's behalf, or systemd's User=), a directory the user may not pass is
    refused by name, and before anything is made or handed over."""
    state = Path(cfg.daemon.state_dir)
    resolved = Path(os.path.realpath(state))  # a link's target is what the user must reach
    user = account or privileges.current()
    privileges.check_parents(resolved, user)
    try:
        resolved.mkdir(mode=0o750, parents=True, exist_ok=True)
    except FileExistsError:  # a file of that name: say so rather than "File exists"
        raise privileges.PrivilegeError(f"cannot use {state}: not a directory") from None
    except OSError as exc:
        raise privileges.PrivilegeError(f"cannot use {exc.filename or state}: {exc.strerror or exc}") from None
    if account:
        privileges.own(resolved, KEPT, account)
    privileges.check_reachable(resolved, user)
    return state


def _control_ready(shared: Shared) -> int:
    row = shared.control_row()
    return row.pid if row.ready else 0


def _control_reloads(shared: Shared) -> tuple[int, str]:
    row = shared.control_row()
    return row.reloads, row.error
