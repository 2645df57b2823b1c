"""The Debian Security Tracker's JSON (https://security-tracker.debian.org/tracker/data/json):
source package -> CVE id -> release codename -> status and fixed version. Matching asks it
whether a Debian build of a package already carries the fix of a CVE (a backport).

Decoded whole at C speed (the file is about 60 MB); only when that fails is it walked package by
package and record by record, to name the one at fault.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

import msgspec

from netscand.vuln.errors import ImportRefused
from netscand.vuln.inputs import Source, name_of, named, read_bytes, reason, shallow


class _Release(msgspec.Struct, frozen=True):
    status: str  # "resolved" | "open" | "undetermined"
    fixed_version: str | None = None  # "0": never affected


class _Cve(msgspec.Struct, frozen=True):
    releases: dict[str, _Release] = {}


Row = tuple[str, str, str, str, str | None]  # package, cve, release, status, fixed_version
_ALL = msgspec.json.Decoder(dict[str, dict[str, _Cve]])
_PACKAGES = msgspec.json.Decoder(dict[str, msgspec.Raw])
_CVE = msgspec.json.Decoder(_Cve)
_RELEASE = msgspec.json.Decoder(_Release)


def read(source: Source) -> list[Row]:
    """Every (package, CVE, release) the tracker lists, or ImportRefused naming the package and
    CVE at fault. Its TEMP-... entries (issues with no CVE id yet) are left out: nothing asks."""
    path, data = name_of(source), read_bytes(source)
    with shallow(path):
        try:
            packages = _ALL.decode(data)
        except msgspec.ValidationError:
            _refuse(path, data)
        except msgspec.DecodeError as exc:
            raise ImportRefused(path, None, f"not JSON: {exc}") from None
    return list(_rows(packages))


def _rows(packages: dict[str, dict[str, _Cve]]) -> Iterator[Row]:
    for package, cves in packages.items():
        for cve_id, cve in cves.items():
            if cve_id.startswith("CVE-"):
                for release, entry in cve.releases.items():
                    yield package, cve_id, release, entry.status, entry.fixed_version


def _refuse(path: str, data: bytes) -> NoReturn:
    """Raise ImportRefused for the first package or record that does not decode."""
    try:
        packages = _PACKAGES.decode(data)
    except msgspec.ValidationError:
        raise ImportRefused(path, None, "expected a JSON object: source package -> CVE -> entry") from None
    for package, raw in packages.items():
        try:
            cves = _PACKAGES.decode(raw)
        except msgspec.ValidationError as exc:
            raise ImportRefused(path, named(package), reason(exc, raw, {})) from None
        for cve_id, entry in cves.items():
            try:
                _CVE.decode(entry)
            except msgspec.ValidationError as exc:
                raise ImportRefused(path, f"{named(package)}: {named(cve_id)}",
                                    _release_fault(entry) or reason(exc, entry, {})) from None
    # Unreachable while the parts decode as the whole does; a refusal, not a crash, if they ever don't.
    raise ImportRefused(path, None, "does not decode as the tracker's JSON")


def _release_fault(entry: msgspec.Raw) -> str | None:
    """What is wrong in a release of a record, with the release named (msgspec names no key)."""
    try:
        releases = _PACKAGES.decode(_PACKAGES.decode(entry).get("releases", b"{}"))
    except msgspec.ValidationError:
        return None  # the record or its releases are not objects: msgspec's path says so
    for release, raw in releases.items():
        try:
            _RELEASE.decode(raw)
        except msgspec.ValidationError as exc:
            return reason(exc, raw, {}, at=f"releases.{named(release)}")
    return None
