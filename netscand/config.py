"""Typed, frozen configuration: built-in defaults, overridden by a TOML file, then by flags.

Every setting is declared once, here, with its default; conf/netscand.toml documents them.
"""

from __future__ import annotations

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
    retries: int = 2


@dataclass(frozen=True)
class Config:
    engine: EngineConfig = field(default_factory=EngineConfig)

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
    sections = {f.name: f.type for f in fields(Config)}
    unknown = set(data) - set(sections)
    if unknown:
        raise ConfigError(f"{path}: unknown section '{sorted(unknown)[0]}'")
    engine = _section(EngineConfig, data.get("engine", {}), "engine")
    if engine.workers < 0 or engine.rate <= 0 or engine.retries < 0:
        raise ConfigError(f"{path}: engine.workers, engine.rate and engine.retries must not be negative")
    return replace(Config(), engine=engine)
