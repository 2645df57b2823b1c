"""The importers' input files: read whole (gunzipped when gzip), bounded, and what is wrong in
them said as a path and a reason, in the words of the config file's and the API's errors."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from netscand.typed import failure
from netscand.vuln.errors import ImportRefused

# A yearly NVD feed is 100-300 MB of JSON, the Debian tracker's about 60 MB: far beyond either,
# a file (or a gzip bomb) is refused rather than read into memory.
MAX_BYTES = 1 << 30
# Read in chunks: f.read(n) reserves n bytes up front, whatever the file's size.
_CHUNK = 1 << 20
_PATTERN = "Expected a string matching regex"
_DATETIME = "Invalid RFC3339 encoded datetime"


# A file to import: its path, or the file opened already (by root, for the daemon's user to read).
Source = str | Path | BinaryIO


def name_of(source: Source) -> str:
    return str(source) if isinstance(source, str | Path) else str(getattr(source, "name", "<input>"))


def read_bytes(source: Source) -> bytes:
    path = name_of(source)
    try:
        if isinstance(source, str | Path):
            with open(source, "rb") as f:
                return _read(path, f)
        return _read(path, source)
    except OSError as exc:
        raise ImportRefused(path, None, f"cannot read: {exc.strerror or exc}") from None


def _read(path: str, f: BinaryIO) -> bytes:
    gzipped = f.read(2) == b"\x1f\x8b"
    f.seek(0)
    return _gunzip(path, f) if gzipped else _bounded(path, f)


def _gunzip(path: str, f: Any) -> bytes:
    try:
        with gzip.GzipFile(fileobj=f) as unzipped:
            return _bounded(path, unzipped)
    except EOFError:
        raise ImportRefused(path, None, "truncated gzip file") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise ImportRefused(path, None, f"corrupt gzip file: {exc}") from None


def _bounded(path: str, f: Any) -> bytes:
    data = bytearray()
    while chunk := f.read(_CHUNK):
        data += chunk
        if len(data) > MAX_BYTES:
            raise ImportRefused(path, None, f"larger than {MAX_BYTES >> 20} MB")
    return bytes(data)


@contextmanager
def shallow(path: str) -> Iterator[None]:
    """Nesting deeper than msgspec's recursion limit is a refused file, not a RecursionError."""
    try:
        yield
    except RecursionError:
        raise ImportRefused(path, None, "nested too deeply") from None


def reason(exc: msgspec.ValidationError, raw: bytes | msgspec.Raw, words: dict[str, str],
           within: tuple[str, ...] = (), at: str = "") -> str:
    """`path: message` for what msgspec refused in `raw`, the path starting below `within`
    (the wrapper a record comes in) and after `at` (where `raw` is); a refused pattern is said
    with `words[field]`."""
    fault = failure(exc)
    inside = len(fault.steps) > len(within) and fault.steps[:len(within)] == within
    steps = fault.steps[len(within):] if inside else fault.steps
    message = fault.message
    if fault.missing is not None:
        message = f'missing "{fault.missing}"'
    elif message.startswith(_PATTERN):
        expected = words.get(str(fault.steps[-1]) if fault.steps else "", "another string")
        message = f"expected {expected}, got {_shown(raw, fault.steps)}"
    elif message.startswith(_DATETIME):
        message = f"expected a date and time such as 2024-07-01T13:15:06.467, got {_shown(raw, fault.steps)}"
    where = (at + "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps)).lstrip(".")
    return f"{where}: {message}" if where else message


def _shown(raw: bytes | msgspec.Raw, steps: tuple[str | int, ...]) -> str:
    value: Any = msgspec.json.decode(raw)
    try:
        for step in steps:
            value = value[step]
    except (KeyError, IndexError, TypeError):
        return "another value"  # a dict key's path ("...") names no value
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def named(key: str) -> str:
    """A key of the file as an error names it: on one line, and short."""
    if key.isprintable() and len(key) <= 60:
        return key
    return json.dumps(key[:57]) + ("..." if len(key) > 57 else "")
