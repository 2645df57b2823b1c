"""The composition root of `netscand serve`: config -> store -> sockets -> supervisor(children).

The only place that wires the layers together; the supervisor is handed the functions its
children run.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from netscand import control, logs, tls
from netscand.config import Config
from netscand.engine import worker
from netscand.engine.shm import Shared
from netscand.listeners import bind_tcp, bind_unix
from netscand.scan.orchestrator import Limits
from netscand.scan.policy import Policy
from netscand.scan.profiles import discovery
from netscand.store import Store
from netscand.supervisor import ChildSpec, Supervisor

log = structlog.get_logger()
DB_NAME = "netscand.db"


def db_path(cfg: Config) -> Path:
    return Path(cfg.daemon.state_dir) / DB_NAME


def serve(cfg: Config) -> int:
    logs.configure(cfg.daemon.log_format)
    state = Path(cfg.daemon.state_dir)
    state.mkdir(mode=0o750, parents=True, exist_ok=True)
    # Create or migrate the schema before forking: children then only open it.
    Store(db_path(cfg)).close()
    unix = bind_unix(cfg.daemon.socket, int(cfg.daemon.socket_mode, 8), cfg.daemon.socket_group)
    tcp = cert = None
    if cfg.daemon.listen:
        cert = tls.ensure(cfg.daemon.tls_cert, cfg.daemon.tls_key, state)
        tcp = bind_tcp(cfg.daemon.listen)
        log.info("tls.certificate", path=str(cert.cert), sha256=cert.fingerprint, generated=cert.generated)
    listeners = control.Listeners(unix, tcp, cert)
    e = cfg.engine
    limits = Limits(rate=e.rate, retries=e.retries, max_running=cfg.daemon.max_running_scans,
                    policy=Policy.from_config(cfg.policy),
                    discovery=discovery(e.ping_icmp, e.ping_syn_ports, e.ping_ack_ports))
    shared = Shared(cfg.workers)
    specs = [
        ChildSpec("worker", lambda i: worker.main(shared, i), count=cfg.workers,
                  heartbeat=lambda i: shared.worker_row(i)[3]),
        ChildSpec("control", lambda i: control.main(shared, limits, listeners, db_path(cfg))),
    ]
    log.info("daemon.start", pid=os.getpid(), workers=cfg.workers, socket=cfg.daemon.socket,
             listen=cfg.daemon.listen or None, state_dir=str(state))
    code = Supervisor(specs, log=lambda msg: log.warning("supervisor", message=msg)).run()
    Path(cfg.daemon.socket).unlink(missing_ok=True)
    log.info("daemon.stop", code=code)
    return code
