"""Vendor and Debian version strings, compared with univers rather than by hand.

A vendor version is a release ("9.2", "10.11.19", "2.3.19.1"), an optional update the vendor
appends ("p1" of OpenSSH's portable releases, "rc1", OpenSSL's "k") which NVD may write either
inside the version ("9.8p1") or in the CPE update field ("9.2" update "p1"), and an optional
distribution build ("10.11.19-MariaDB-0+deb12u1": build "0+deb12u1"), which upstream ranges
ignore. Releases and updates are compared with univers' RpmVersion (rpmvercmp: numeric and
alphabetic segments, "2.90" > "2.9"), the closest to a generic vendor scheme univers has.
Whatever cannot be read is "cannot compare" (None), never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from univers.versions import DebianVersion, InvalidVersion, RpmVersion, Version

from netscand.vuln.records import CpeMatch

_MAX_LEN = 128  # the longest real versions are ~40 characters; keeps the regex's work bounded
# release, then an update glued to it or after a separator only if it is a pre-release word,
# then a build after "-", "+" or "~" (an optional product tag such as "MariaDB-" skipped).
_VERSION = re.compile(
    r"(?P<release>\d{1,9}(?:\.\d{1,9}){0,9})"
    r"(?P<update>[a-z]{1,2}\d{0,9}|[._-]?(?:alpha|beta|pre|rc|dev)\.?\d{0,9})?"
    r"(?:[-+~](?:[a-z][a-z0-9]{0,31}-)?(?P<build>[a-z0-9][a-z0-9.+~:-]{0,63}))?",
    re.IGNORECASE | re.ASCII,  # \d is 0-9 only: other scripts' digits are no version (univers would refuse them)
)
_UPDATE = re.compile(r"[._-]?(?P<word>[a-z]{1,8})\.?(?P<number>\d{0,9})", re.IGNORECASE | re.ASCII)
_PRE_RELEASE = frozenset({"alpha", "beta", "pre", "rc", "dev"})
_NO_UPDATE = (None, "", "*", "-")
_PORTABLE = "p1"  # OpenSSH portable's first (and usually only) edition of a release


@dataclass(frozen=True)
class VendorVersion:
    release: str  # "9.2"
    update: str | None = None  # "p1"
    build: str | None = None  # "0+deb12u1": a distribution's build, ignored by upstream ranges

    def __str__(self) -> str:
        return self.release + (self.update or "")


def parse(text: str | None, update: str | None = None) -> VendorVersion | None:
    """The vendor version `text` names (with `update` from a CPE's update field), or None."""
    if not text or len(text) > _MAX_LEN:
        return None
    match = _VERSION.fullmatch(text.strip())
    if match is None:
        return None
    glued = match["update"]
    if glued is None and update not in _NO_UPDATE:
        if not _UPDATE.fullmatch(update or ""):
            return None
        glued = update
    return VendorVersion(match["release"], _normal_update(glued), match["build"])


def _normal_update(update: str | None) -> str | None:
    """"-rc.1" -> "rc1": the separators NVD and vendors vary on carry no meaning."""
    if update is None:
        return None
    match = _UPDATE.fullmatch(update)
    return f"{match['word']}{match['number']}".lower() if match else update.lower()


def compare(a: VendorVersion, b: VendorVersion) -> int:
    """-1, 0 or 1 as a is older than, the same release as, or newer than b (builds ignored).

    A release without an update is the same as its "p1" (OpenSSH's portable edition of a release
    is p1: "9.8" names 9.8p1), older than any other update ("9.3" < "9.3p2", OpenSSL's "1.1.1" <
    "1.1.1l"), and newer than a pre-release of it ("1.0rc1" < "1.0").
    """
    order = _cmp(RpmVersion(_trimmed(a.release)), RpmVersion(_trimmed(b.release)))
    if order or a.update == b.update:
        return order
    if a.update is None or b.update is None:
        update, sign = (b.update, 1) if a.update is None else (a.update, -1)
        return 0 if update == _PORTABLE else sign if _is_pre(update) else -sign
    if _is_pre(a.update) != _is_pre(b.update):
        return -1 if _is_pre(a.update) else 1
    return _cmp(RpmVersion(a.update), RpmVersion(b.update))


def _trimmed(release: str) -> str:
    # "7.0" and "7.0.0" name one release; rpmvercmp would call the longer one newer.
    while release.endswith(".0") and release.count(".") > 0:
        release = release[:-2]
    return release


def _is_pre(update: str | None) -> bool:
    match = _UPDATE.fullmatch(update or "")
    return match is not None and match["word"].lower() in _PRE_RELEASE


def _cmp(a: Version, b: Version) -> int:
    return -1 if a < b else 1 if a > b else 0


@dataclass(frozen=True)
class Range:
    """An NVD cpeMatch version range; an absent bound is open."""

    start_including: str | None = None
    start_excluding: str | None = None
    end_including: str | None = None
    end_excluding: str | None = None

    @classmethod
    def of(cls, criterion: CpeMatch) -> Range:
        return cls(criterion.start_including, criterion.start_excluding,
                   criterion.end_including, criterion.end_excluding)

    def bounded(self) -> bool:
        return any((self.start_including, self.start_excluding, self.end_including, self.end_excluding))

    def __str__(self) -> str:
        parts = [f">= {self.start_including}" if self.start_including else "",
                 f"> {self.start_excluding}" if self.start_excluding else "",
                 f"<= {self.end_including}" if self.end_including else "",
                 f"< {self.end_excluding}" if self.end_excluding else ""]
        return ", ".join(p for p in parts if p)


def in_range(version: VendorVersion, bounds: Range) -> bool | None:
    """Whether version lies within bounds; None when a bound cannot be compared."""
    checks = ((bounds.start_including, (0, 1)), (bounds.start_excluding, (1,)),
              (bounds.end_including, (-1, 0)), (bounds.end_excluding, (-1,)))
    for bound, allowed in checks:
        if bound is None:
            continue
        parsed = parse(bound)
        if parsed is None:
            return None
        if compare(version, parsed) not in allowed:
            return False
    return True


def debian(text: str | None) -> DebianVersion | None:
    """A Debian package version ("1:9.2p1-2+deb12u3"), or None if it is not one."""
    if not text or len(text) > _MAX_LEN:
        return None
    try:
        return DebianVersion(text)
    except (InvalidVersion, ValueError, TypeError):
        return None


def debian_compare(a: str | None, b: str | None) -> int | None:
    """-1, 0 or 1 as Debian version a sorts before, equal to or after b; None if either is unreadable."""
    left, right = debian(a), debian(b)
    if left is None or right is None:
        return None
    return _cmp(left, right)
