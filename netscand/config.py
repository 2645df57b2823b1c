"""Typed, frozen configuration: built-in defaults, overridden by a TOML file, then by flags.

Every setting is declared once, here, with its default; conf/netscand.toml documents them.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class EngineConfig:
    workers: int = 0  # 0: one per CPU core
    rate: float = 50_000.0  # probes per second for profiles that run at full rate
    retries: int = 3
    # Host discovery of routed targets (on-link ones answer ARP): a host is up if anything answers.
    ping_icmp: bool = True
    ping_syn_ports: str = "443"  # port list, "" for none
    ping_ack_ports: str = "80"


@dataclass(frozen=True)
class DaemonConfig:
    state_dir: str = "/var/lib/netscand"  # SQLite database, generated TLS certificate
    socket: str = "/run/netscand/netscand.sock"
    socket_mode: str = "0660"  # octal, as chmod takes it
    socket_group: str = "netscand"  # left as the daemon's own group when no such group exists
    listen: str = "127.0.0.1:8443"  # HTTPS listener, HOST:PORT; empty to disable
    tls_cert: str = ""  # PEM certificate; empty: a self-signed one is made in state_dir/tls
    tls_key: str = ""
    max_running_scans: int = 2  # more are queued until a slot frees
    max_queued_per_owner: int = 16  # queued scans per owner (token, or Unix-socket uid); 429 beyond
    retention_days: int = 365  # finished scans older than this are deleted; 0 keeps them for ever
    # Connections open at once, counted from accept (before TLS); more are closed at once.
    max_connections: int = 512  # on the HTTPS listener, all clients together
    max_connections_per_address: int = 64  # on the HTTPS listener, per client address (IPv6: per /64)
    max_unix_connections: int = 256  # on the Unix socket
    tls_handshake_timeout: float = 10.0  # seconds a TLS handshake may take before the connection is closed
    log_format: str = "auto"  # json, console, or auto (console on a terminal)
    user: str = "netscand"  # started as root, the daemon switches to this account after binding


# Out of the box a scan may reach what is a sysadmin's own by definition: private, shared (CGNAT),
# link-local and loopback space, and the benchmarking range the lab uses. Public addresses need
# a deliberate allowed_targets. Multicast, reserved and "this network" space is never a target.
DEFAULT_ALLOWED = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
                   "127.0.0.0/8", "198.18.0.0/15"]
DEFAULT_EXCLUDED = ["0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4"]
# Only Unix-socket clients (and the one-shot CLI) may scan these: from the daemon's own host,
# loopback and link-local addresses reach services a remote client could not otherwise touch.
DEFAULT_SOCKET_ONLY = ["127.0.0.0/8", "169.254.0.0/16"]


@dataclass(frozen=True)
class PolicyConfig:
    allowed_targets: list[str] = field(default_factory=lambda: list(DEFAULT_ALLOWED))
    excluded_targets: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDED))
    socket_only_targets: list[str] = field(default_factory=lambda: list(DEFAULT_SOCKET_ONLY))
    max_target_addresses: int = 1 << 24
    max_rate: float = 100_000.0


@dataclass(frozen=True)
class Config:
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    @property
    def workers(self) -> int:
        return self.engine.workers or os.cpu_count() or 1


def _section(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    out = {}
    for key, value in values.items():
        f = known.get(key)
        if f is None:
            raise ConfigError(f"{where}: unknown setting '{key}'")
        default = getattr(cls(), key)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(default):
            raise ConfigError(f"{where}.{key}: expected {type(default).__name__}, got {value!r}")
        out[key] = value
    return cls(**out)


def load(path: Path | None) -> Config:
    """Defaults, overridden by `path` when given (a missing file given explicitly is an error)."""
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    sections = {"daemon": DaemonConfig, "engine": EngineConfig, "policy": PolicyConfig}
    unknown = set(data) - set(sections)
    if unknown:
        raise ConfigError(f"{path}: unknown section '{sorted(unknown)[0]}'")
    cfg = Config(**{name: _section(cls, data.get(name, {}), name) for name, cls in sections.items()})
    check(cfg, str(path))
    return cfg


def override(cfg: Config, section: str, **values: Any) -> Config:
    """Command-line flags over the file: only the values actually given (not None)."""
    given = {k: v for k, v in values.items() if v is not None}
    return replace(cfg, **{section: replace(getattr(cfg, section), **given)}) if given else cfg


def check(cfg: Config, where: str) -> None:
    e, d = cfg.engine, cfg.daemon
    if e.workers < 0 or e.rate <= 0 or e.retries < 0:
        raise ConfigError(f"{where}: engine.workers and engine.retries must not be negative, engine.rate must be positive")
    if d.max_running_scans < 1 or cfg.policy.max_target_addresses < 1 or cfg.policy.max_rate <= 0:
        raise ConfigError(f"{where}: daemon.max_running_scans and policy.max_target_addresses must be at least 1, "
                          "policy.max_rate positive")
    if d.max_queued_per_owner < 1 or d.retention_days < 0:
        raise ConfigError(f"{where}: daemon.max_queued_per_owner must be at least 1, daemon.retention_days "
                          "must not be negative (0 keeps scans for ever)")
    for key in ("allowed_targets", "excluded_targets", "socket_only_targets"):
        for block in getattr(cfg.policy, key):
            try:
                ipaddress.IPv4Network(block, strict=False)
            except (ValueError, TypeError):
                raise ConfigError(f"{where}: policy.{key}: {block!r} is not an IPv4 CIDR block") from None
    try:
        int(d.socket_mode, 8)
    except ValueError:
        raise ConfigError(f"{where}: daemon.socket_mode must be octal, like 0660") from None
    if d.listen and (":" not in d.listen or not d.listen.rsplit(":", 1)[1].isdigit()):
        raise ConfigError(f"{where}: daemon.listen must be HOST:PORT")
    if not d.user:
        raise ConfigError(f"{where}: daemon.user must name an account")
    if min(d.max_connections, d.max_connections_per_address, d.max_unix_connections) < 1 or \
            d.tls_handshake_timeout <= 0:
        raise ConfigError(f"{where}: daemon.max_connections, daemon.max_connections_per_address and "
                          "daemon.max_unix_connections must be at least 1, daemon.tls_handshake_timeout positive")
    if d.log_format not in ("auto", "json", "console"):
        raise ConfigError(f"{where}: daemon.log_format must be auto, json or console")
