"""Distribution builds in banners, and what the Debian Security Tracker says of them.

Debian fixes security bugs by patching the version a release shipped, not by moving to the
upstream version NVD names as fixed: OpenSSH 9.2p1 in bookworm is not vulnerable to
CVE-2023-48795 from build 1:9.2p1-2+deb12u2 on. A banner that carries the Debian revision
("OpenSSH_9.2p1 Debian-2+deb12u3", MariaDB's "10.11.19-MariaDB-0+deb12u1") names the build
exactly, so the tracker's fixed version for that release decides. Banners never show the epoch
("1:" of openssh, "5:" of redis): the tracker's epoch is applied before comparing.

An Ubuntu build ("3ubuntu0.10") is reported as vulnerable with evidence saying it could not be
checked: Ubuntu patches on its own schedule and the Debian tracker's versions say nothing of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Protocol

import msgspec

from netscand.vuln import versions
from netscand.vuln.records import Finding, TrackerEntry

# Debian's security updates are numbered per release: "+deb12u3", "~deb12u1".
CODENAMES = {"8": "jessie", "9": "stretch", "10": "buster", "11": "bullseye", "12": "bookworm",
             "13": "trixie", "14": "forky"}
_BANNER_MAX = 512
# What follows the upstream version when a build is named: OpenSSH's " Debian-2+deb12u3",
# " Raspbian-10+deb10u2" (Raspbian rebuilds Debian's sources, revisions and all) or
# " Ubuntu-3ubuntu0.10", MariaDB's "-MariaDB-0+deb12u1", or a bare "-4~deb12u2" (a package
# version written whole; dnsmasq's version.bind, "dnsmasq-2.90", carries no revision).
# The revision ends the word, or a "-" follows it (MariaDB's "-log" when its binary log is on).
_TAIL = re.compile(r"(?: Debian-| Raspbian-| Ubuntu-|-(?:[A-Za-z]{1,16}-)?)(?P<revision>\d[0-9A-Za-z.]{0,63}(?:[+~][0-9A-Za-z.]{1,63}){0,4})"
                   r"(?![^\s)(;,-])")
_DEB_RELEASE = re.compile(r"[+~]deb(?P<number>\d{1,2})u\d+")
_NEVER_AFFECTED = "0"  # the tracker's fixed_version for a release the bug never reached

# CPE vendor:product -> Debian source package, for the products service detection names: one
# name of each product (match.ALIASES gives the others).
PACKAGES = {
    ("openbsd", "openssh"): "openssh",
    ("nginx", "nginx"): "nginx",
    ("mariadb", "mariadb"): "mariadb",
    ("redis", "redis"): "redis",
    ("lfprojects", "valkey"): "valkey",
    ("beasts", "vsftpd"): "vsftpd",
    ("thekelleys", "dnsmasq"): "dnsmasq",
    ("net-snmp", "net-snmp"): "net-snmp",
    ("ntpsec", "ntpsec"): "ntpsec",
    ("ntp", "ntp"): "ntp",
    ("memcached", "memcached"): "memcached",
    ("tftp-hpa_project", "tftp-hpa"): "tftp-hpa",
    ("isc", "bind"): "bind9",
    ("nlnetlabs", "unbound"): "unbound",
    ("apache", "http_server"): "apache2",
    ("lighttpd", "lighttpd"): "lighttpd",
    ("proftpd", "proftpd"): "proftpd-dfsg",
    ("dropbear_ssh_project", "dropbear_ssh"): "dropbear",
    ("samba", "samba"): "samba",
    ("postfix", "postfix"): "postfix",
    ("exim", "exim"): "exim4",
    ("dovecot", "dovecot"): "dovecot",
    ("eclipse", "mosquitto"): "mosquitto",
    ("cyrusimap", "cyrus_imap"): "cyrus-imapd",
}


class Tracker(Protocol):
    def fixed_in(self, package: str, cve_id: str) -> dict[str, TrackerEntry]: ...


@dataclass(frozen=True)
class Build:
    """The distribution build a banner names."""

    distro: Literal["debian", "ubuntu"]
    upstream: str  # "9.2p1"
    revision: str  # "2+deb12u3"
    release: str | None  # "bookworm"; None when the revision names no release

    def version(self, epoch: str | None = None) -> str:
        """The Debian package version: "1:9.2p1-2+deb12u3" with the tracker's epoch "1"."""
        return f"{epoch + ':' if epoch else ''}{self.upstream}-{self.revision}"


def build(banner: str | None, upstream: str | None) -> Build | None:
    """The build a banner names right after the upstream version `upstream`, or None."""
    if not banner or not upstream:
        return None
    text = banner[:_BANNER_MAX]
    # Where the version stands as a whole word ("OpenSSH_9.2p1 ", not the "2.0" of "SSH-2.0-").
    # CPE names are lowercase: the banner's own spelling is what the package version has.
    word = rf"(?<![0-9A-Za-z.]){re.escape(upstream)}(?![0-9A-Za-z.])"
    for place in re.finditer(word, text, re.IGNORECASE):
        tail = _TAIL.match(text, place.end())
        if tail:
            return _named(place.group(0), tail["revision"])
    return None


def _named(upstream: str, revision: str) -> Build:
    if "ubuntu" in revision:
        return Build("ubuntu", upstream, revision, None)
    release = _DEB_RELEASE.search(revision)
    return Build("debian", upstream, revision, CODENAMES.get(release["number"]) if release else None)


def decide(finding: Finding, found: Build | None, package: str | None, tracker: Tracker) -> Finding:
    """The finding as the tracker leaves it: fixed_by_distribution with the fixed build, or as it
    was with the reason the build could not clear it added to its evidence."""
    if found is None:
        return finding
    reason, fixed = _verdict(finding.id, found, package, tracker)
    evidence = f"{finding.evidence}; {reason}"
    if fixed is None:
        return msgspec.structs.replace(finding, evidence=evidence)
    return msgspec.structs.replace(finding, status="fixed_by_distribution", fixed_version=fixed, evidence=evidence)


def _verdict(cve_id: str, found: Build, package: str | None, tracker: Tracker) -> tuple[str, str | None]:
    """(what the tracker says of this build, the fixed version if the build has the fix)."""
    if found.distro == "ubuntu":
        return f"Ubuntu build {found.revision}: the Debian tracker cannot decide for it, not checked", None
    if found.release is None:
        return f"Debian build {found.revision} names no release: not checked", None
    if package is None:
        return f"Debian build {found.revision}: no Debian source package known for this product", None
    entry = tracker.fixed_in(package, cve_id).get(found.release)
    if entry is None:
        return f"Debian tracker has no {found.release} entry for {package}", None
    if entry.status == "resolved" and entry.fixed_version == _NEVER_AFFECTED:
        return f"Debian tracker: {package} in {found.release} was never affected (fixed_version 0)", _NEVER_AFFECTED
    if entry.status != "resolved" or not entry.fixed_version:
        return f"Debian tracker: {entry.status} in {found.release} ({package})", None
    return _against(entry.fixed_version, found, package)


def _against(fixed: str, found: Build, package: str) -> tuple[str, str | None]:
    epoch = fixed.split(":", 1)[0] if ":" in fixed else None
    running = found.version(epoch)
    order = versions.debian_compare(fixed, running)
    if order is None:
        return f"Debian tracker: {package} {fixed} cannot be compared with the running {running}", None
    if order <= 0:
        return f"Debian tracker: fixed in {package} {fixed} ({found.release}), running {running}", fixed
    return f"Debian tracker: fixed in {package} {fixed} ({found.release}), later than the running {running}", None
