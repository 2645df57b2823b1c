"""The import direction of the layers, checked on the source of every module of the package.

Each layer (a subpackage or top-level module of netscand) lists the layers it may import; anything
else fails, so a new dependency is a decision made here, not a line slipped into a module.
api -> scan -> engine; the store is used by scan and api; the engine stands alone, so it can be
reasoned about (and run in its workers) without anything above it; cli/ only parses and prints,
so the engine, the supervisor and the daemon are wired in the composition roots (daemon.py,
control.py, compose.py, oneshot.py), which alone may import anything. Imports under
TYPE_CHECKING count too: they are a dependency all the same.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import netscand

PACKAGE = Path(netscand.__file__).parent
ANYTHING = None
# The composition roots: they build the process out of every layer.
ROOTS = ("__main__", "daemon", "control", "compose", "oneshot", "preload")
# layer -> the other layers it may import (ANYTHING for a composition root)
ALLOWED: dict[str, frozenset[str] | None] = {
    **dict.fromkeys(ROOTS, ANYTHING),
    "api": frozenset({"scan", "store", "config", "typed", "statuses"}),
    "cli": frozenset({"config", "lab", "scan", "statuses", "vuln"}),
    "scan": frozenset({"engine", "store", "config", "profiling", "netinfo", "statuses", "vuln"}),
    "engine": frozenset({"ipc", "wire"}),
    "store": frozenset({"statuses"}),
    "config": frozenset({"scan", "typed"}),
    "vuln": frozenset({"typed"}),  # CVE data and matching: stands alone, like the engine
    "lab": frozenset({"engine", "scan", "tls", "wire"}),  # builds the test network; frames as the engine sends them
    "supervisor": frozenset({"notify"}),
    "listeners": frozenset({"privileges"}),
    "notify": frozenset({"files"}),
    "tls": frozenset({"files"}),
    "profiling": frozenset({"wire"}),
    "wire": frozenset(),  # BER and DNS encodings shared by engine, profiling and lab: a leaf
    **dict.fromkeys(("netinfo", "ipc", "privileges", "files", "logs", "typed", "statuses"),
                    frozenset()),
}
# Modules of cli/ that start the daemon's own parts (and so need the roots): `serve` runs the
# daemon, `doctor` checks what the daemon would do at start, `token` opens the daemon's store as
# the daemon's user, and `scan` hands its scan to the one-shot root.
EXEMPT = {
    "netscand.cli.serve": frozenset({"daemon", "control", "listeners", "notify", "privileges", "store"}),
    "netscand.cli.doctor": frozenset({"daemon", "preload", "privileges", "store"}),
    "netscand.cli.token": frozenset({"daemon", "privileges", "store"}),
    "netscand.cli.scan": frozenset({"oneshot"}),
    # `cve` opens the CVE database in the daemon's state directory as the daemon's user
    "netscand.cli.cve": frozenset({"daemon", "privileges"}),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, package: str) -> Iterator[tuple[int, str]]:
    """(line, module) for every import of a module of `package`, relative ones made absolute;
    for `from package import name` both the package and package.name, which may be a module."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            yield node.lineno, base
            yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names)


def layer(module: str) -> str | None:
    """The layer of a module of the package; None for the package itself (and the names its
    __init__ holds, such as __version__) and for anything outside it."""
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "netscand":
        return None
    name = parts[1]
    return name if (PACKAGE / f"{name}.py").exists() or (PACKAGE / name / "__init__.py").exists() else None


def may_import(module: str, own: str, target: str) -> bool:
    if target == own:
        return True
    if own not in ALLOWED:
        return False
    allowed = ALLOWED[own]
    return allowed is ANYTHING or target in allowed | EXEMPT.get(module, frozenset())


def violations() -> Iterator[str]:
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        own = layer(name)
        if own is None:
            continue  # the package's __init__
        if own not in ALLOWED:
            yield f"{path.relative_to(PACKAGE.parent)}: layer {own} has no entry in ALLOWED"
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for line, target in imported(path.read_text(), package):
            target_layer = layer(target)
            if target_layer is not None and not may_import(name, own, target_layer):
                yield f"{path.relative_to(PACKAGE.parent)}:{line} ({own}) imports {target}"


def test_every_layer_imports_only_what_it_may() -> None:
    found = list(violations())
    assert not found, "\n".join(found)


@pytest.mark.parametrize("module, target", [
    ("netscand.api.app", "daemon"), ("netscand.cli.ctl", "daemon"), ("netscand.cli.ctl", "engine"),
    ("netscand.cli.scan", "supervisor"), ("netscand.scan.live", "compose"), ("netscand.scan.live", "api"),
    ("netscand.engine.worker", "scan"), ("netscand.store.store", "scan"),
])
def test_a_layer_importing_a_root_or_a_layer_above_it_fails(module: str, target: str) -> None:
    own = layer(module)
    assert own is not None and not may_import(module, own, target)


@pytest.mark.parametrize("source, expected", [
    ("from netscand.engine.shm import Shared", "netscand.engine.shm"),
    ("import netscand.engine.shm", "netscand.engine.shm"),
    ("from netscand import engine", "netscand.engine"),
    ("from ..engine import shm", "netscand.engine"),
    ("from . import ready", "netscand.api.ready"),
])
def test_every_form_of_import_is_seen(source: str, expected: str) -> None:
    assert expected in {module for _, module in imported(source, "netscand.api")}
