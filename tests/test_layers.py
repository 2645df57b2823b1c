"""The import direction of the layers, checked on the source of every module of the package.

api -> scan -> engine; the store is used by scan and api; the engine stands alone, so it can be
reasoned about (and run in its workers) without anything above it; cli/ only parses and prints,
so the engine and the supervisor are wired in the composition roots (daemon.py, oneshot.py).
Imports under TYPE_CHECKING count too: they are a dependency all the same.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import netscand

PACKAGE = Path(netscand.__file__).parent
# layer -> the layers it must not import
FORBIDDEN = {
    "api": ("engine",),
    "engine": ("api", "scan", "store", "config", "cli"),
    "store": ("api", "scan"),
    "scan": ("api", "cli"),
    "cli": ("engine", "supervisor"),
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
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "netscand" else None


def violations() -> Iterator[str]:
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        own = layer(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for line, target in imported(path.read_text(), package):
            if layer(target) in FORBIDDEN.get(own or "", ()):
                yield f"{path.relative_to(PACKAGE.parent)}:{line} ({own}) imports {target}"


def test_no_layer_imports_one_it_must_not() -> None:
    found = list(violations())
    assert not found, "\n".join(found)


@pytest.mark.parametrize("source, expected", [
    ("from netscand.engine.shm import Shared", "netscand.engine.shm"),
    ("import netscand.engine.shm", "netscand.engine.shm"),
    ("from netscand import engine", "netscand.engine"),
    ("from ..engine import shm", "netscand.engine"),
    ("from . import ready", "netscand.api.ready"),
])
def test_every_form_of_import_is_seen(source: str, expected: str) -> None:
    assert expected in {module for _, module in imported(source, "netscand.api")}
