"""Typed, frozen configuration: built-in defaults, overridden by a TOML file, then by flags.

Every setting is declared once, here, with its default and what it may be (msgspec checks the
types and bounds, then the items of the lists: CIDR blocks, port lists); conf/netscand.toml
documents them. A bad value is one line naming its key, what was expected and what was given.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct, field

from netscand.scan import trust
from netscand.scan.ports import PortSpecError, port_ranges
from netscand.typed import failure


class ConfigError(ValueError):
    pass


Count = Annotated[int, Meta(ge=1)]
NonNegative = Annotated[int, Meta(ge=0)]
Positive = Annotated[float, Meta(gt=0)]
# Strings the rest of the code parses, so a bad one is caught here, with the key that holds it.
PortList = Annotated[str, Meta(extra={"expected": 'a port list such as "22,80,8000-8100" ("" for none)'})]
Cidrs = Annotated[list[str], Meta(extra={"expected": 'a list of IPv4 CIDR blocks such as "10.0.0.0/8"'})]
# What chmod and the daemon's int(mode, 8) read as a mode: 3 or 4 octal digits (the set-id and
# sticky bits), after an optional 0. `(?!\n)`: msgspec searches, and `$` matches before a newline.
Octal = Annotated[str, Meta(pattern="^0?[0-7]{3,4}$(?!\\n)",
                            extra={"expected": 'octal permissions such as "0660"'})]
Listen = Annotated[str, Meta(pattern="^(?:|.+:[0-9]+)$(?!\\n)", extra={"expected": 'HOST:PORT, or "" for none'})]


class EngineConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    workers: NonNegative = 0  # 0: one per CPU core
    # Probes per second at most for scans that give no rate: the ceiling of the engine's closed
    # loop (engine/rate.py), which finds what the path carries below it. It is policy.max_rate's
    # default: a lower ceiling would cap the loop below what a fast path carries.
    rate: Positive = 100_000.0
    retries: NonNegative = 3
    # Host discovery of routed targets (on-link ones answer ARP): a host is up if anything answers.
    ping_icmp: bool = True
    ping_syn_ports: PortList = "443"
    ping_ack_ports: PortList = "80"


class DaemonConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    state_dir: str = "/var/lib/netscand"  # SQLite database, generated TLS certificate
    socket: str = "/run/netscand/netscand.sock"
    socket_mode: Octal = "0660"  # as chmod takes it
    socket_group: str = "netscand"  # left as the daemon's own group when no such group exists
    listen: Listen = "127.0.0.1:8443"  # HTTPS listener; empty to disable
    tls_cert: str = ""  # PEM certificate; empty: a self-signed one is made in state_dir/tls
    tls_key: str = ""
    max_running_scans: Count = 2  # more are queued until a slot frees
    max_queued_per_owner: Count = 16  # queued scans per owner (token, or Unix-socket uid); 429 beyond
    retention_days: NonNegative = 365  # finished scans older than this are deleted; 0 keeps them for ever
    # Connections open at once, counted from accept (before TLS); more are closed at once.
    max_connections: Count = 512  # on the HTTPS listener, all clients together
    max_connections_per_address: Count = 64  # on the HTTPS listener, per client address (IPv6: per /64)
    max_unix_connections: Count = 256  # on the Unix socket
    tls_handshake_timeout: Positive = 10.0  # seconds a TLS handshake may take before the connection is closed
    log_format: Literal["auto", "json", "console"] = "auto"  # auto: console on a terminal
    user: Annotated[str, Meta(min_length=1)] = "netscand"  # started as root, the daemon switches to it


# Out of the box a scan may reach what is a sysadmin's own by definition: private, shared (CGNAT),
# link-local and loopback space, and the benchmarking range the lab uses. Public addresses need
# a deliberate allowed_targets. Multicast, reserved and "this network" space is never a target.
DEFAULT_ALLOWED = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
                   "127.0.0.0/8", "198.18.0.0/15"]
DEFAULT_EXCLUDED = ["0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4"]
# Only Unix-socket clients (and the one-shot CLI) may scan these: from the daemon's own host,
# loopback and link-local addresses reach services a remote client could not otherwise touch.
DEFAULT_SOCKET_ONLY = ["127.0.0.0/8", "169.254.0.0/16"]


class PolicyConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    allowed_targets: Cidrs = field(default_factory=lambda: list(DEFAULT_ALLOWED))
    excluded_targets: Cidrs = field(default_factory=lambda: list(DEFAULT_EXCLUDED))
    socket_only_targets: Cidrs = field(default_factory=lambda: list(DEFAULT_SOCKET_ONLY))
    max_target_addresses: Count = 1 << 24
    max_rate: Positive = 100_000.0


Url = Annotated[str, Meta(pattern="^https?://[^\\s]+$(?!\\n)", extra={"expected": "an http:// or https:// URL"})]


class CveConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Where `netscand cve sync` fetches: NVD's JSON 2.0 feed files (nvdcve-2.0-<year>.json.gz
    # and the modified and recent ones) under feed_url, and the Debian Security Tracker's JSON.
    # With an API key, a synced database asks api_url (NVD CVE API 2.0) for changes only.
    feed_url: Url = "https://nvd.nist.gov/feeds/json/cve/2.0/"
    api_url: Url = "https://services.nvd.nist.gov/rest/json/cves/2.0"
    tracker_url: Url = "https://security-tracker.debian.org/tracker/data/json"


AnyCidrs = Annotated[list[str], Meta(extra={"expected": 'a list of CIDR blocks such as "198.18.0.0/15" or "fd00::/8"'})]


class WebhooksConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Empty: no webhook may be created. A token holder names the URL, so the daemon would
    # otherwise call wherever it is asked to, its own network included.
    allowed_destinations: AnyCidrs = field(default_factory=list)
    timeout: Positive = 10.0  # seconds one delivery attempt may take, connecting included
    max_attempts: Annotated[int, Meta(ge=1, le=100)] = 12  # then the delivery is `failed`
    retry_first: Positive = 5.0  # seconds: the first retry's wait; each one's ceiling doubles
    retry_max: Positive = 3600.0  # seconds: the longest wait between two attempts
    max_concurrent: Count = 8  # deliveries in flight at once, all webhooks together
    per_webhook_concurrent: Annotated[int, Meta(ge=1, le=64)] = 2  # of one webhook's, so one that hangs holds few
    ca_file: str = ""  # PEM CA certificates receivers' certificates may chain to, beside the system's


class Config(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    cve: CveConfig = field(default_factory=CveConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)

    @property
    def workers(self) -> int:
        return self.engine.workers or os.cpu_count() or 1


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
    return _validated(data, str(path))


def override(cfg: Config, section: str, **values: Any) -> Config:
    """Command-line flags over the file: only the values actually given (not None)."""
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return cfg
    return msgspec.structs.replace(cfg, **{section: msgspec.structs.replace(getattr(cfg, section), **given)})


def check(cfg: Config, where: str) -> None:
    """The file's rules, for a Config built otherwise (flags over the file, a test's)."""
    _validated(msgspec.to_builtins(cfg), where)


def _validated(data: dict[str, Any], where: str) -> Config:
    try:
        cfg = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        raise _problem(exc, data, where) from None
    _check_items(cfg, where)
    return cfg


def _check_items(cfg: Config, where: str) -> None:
    for key in ("allowed_targets", "excluded_targets", "socket_only_targets"):
        for i, block in enumerate(getattr(cfg.policy, key)):
            try:
                ipaddress.IPv4Network(block, strict=False)
            except ValueError:
                raise ConfigError(f"{where}: policy.{key}[{i}]: expected an IPv4 CIDR block such as "
                                  f'"10.0.0.0/8", got {_shown(block)}') from None
    for i, block in enumerate(cfg.webhooks.allowed_destinations):
        try:
            ipaddress.ip_network(block, strict=False)
        except ValueError:
            raise ConfigError(f"{where}: webhooks.allowed_destinations[{i}]: expected a CIDR block such as "
                              f'"198.18.0.0/15" or "fd00::/8", got {_shown(block)}') from None
    _check_ca_file(cfg.webhooks.ca_file, where)
    for key in ("ping_syn_ports", "ping_ack_ports"):
        try:
            if getattr(cfg.engine, key).strip():
                port_ranges(getattr(cfg.engine, key))
        except PortSpecError as exc:
            raise ConfigError(f"{where}: engine.{key}: expected {_expected(('engine', key))}, "
                              f"got {_shown(getattr(cfg.engine, key))}: {exc}") from None


def _check_ca_file(path: str, where: str) -> None:
    """Read as HTTPS deliveries will read it: a file that would fail them fails the start (or the
    reload) instead, and is read as the user the daemon runs as when the control process loads it."""
    if not path:
        return
    try:
        trust.check_ca_file(path)
    except trust.CaFileError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _problem(exc: msgspec.ValidationError, data: dict[str, Any], where: str) -> ConfigError:
    fault = failure(exc)
    key = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in fault.steps).lstrip(".")
    if fault.unknown is not None:
        name = f"{key}.{fault.unknown}" if key else fault.unknown
        return ConfigError(f"{where}: {name}: unknown {'setting' if key else 'section'}")
    shown = _shown(_value(data, fault.steps))
    return ConfigError(f"{where}: {key}: expected {_expected(fault.steps)}, got {shown}")


def _value(data: Any, steps: tuple[str | int, ...]) -> Any:
    for step in steps:
        data = data[step]
    return data


def _shown(value: Any) -> str:
    """As the TOML file writes it (near enough), and short."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _expected(steps: tuple[str | int, ...]) -> str:
    """What the setting at `steps` may be, in words, from its declaration."""
    kind: Any = msgspec.inspect.type_info(Config)
    for step in steps:
        kind = getattr(kind, "type", kind)  # through Meta annotations
        if isinstance(step, int):
            kind = kind.item_type
        else:
            kind = next(f.type for f in kind.fields if f.name == step)
    return _words(kind)


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
_WORDS: dict[type, str] = {msgspec.inspect.IntType: "an integer", msgspec.inspect.FloatType: "a number",
                           msgspec.inspect.BoolType: "true or false", msgspec.inspect.StructType: "a table",
                           msgspec.inspect.ListType: "a list"}


def _words(kind: Any) -> str:
    if isinstance(kind, msgspec.inspect.Metadata):
        return (kind.extra or {}).get("expected") or _words(kind.type)
    bounds = "".join(f" {sign} {getattr(kind, name):g}" for name, sign in _BOUNDS
                     if getattr(kind, name, None) is not None)
    if isinstance(kind, msgspec.inspect.LiteralType):
        return "one of " + ", ".join(json.dumps(v) for v in kind.values)
    if isinstance(kind, msgspec.inspect.StrType):
        return "a non-empty string" if kind.min_length else "a string"
    return _WORDS.get(type(kind), "something else") + bounds
