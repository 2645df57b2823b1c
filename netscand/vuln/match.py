"""A port's CPE name and banner against the CVE data: which records apply, and how.

For each record that names the port's product, every configuration is evaluated as NVD writes it
(AND/OR nodes, negate): the port's CPE decides the criteria naming its own product, by version
(exact, or the versionStart/End range); criteria naming other products that are marked
vulnerable are false (this port is not them); the "running on/with" criteria (vulnerable false:
an operating system, hardware, or another product the flaw needs) are decided by the OS guess
where they name an OS and cannot be decided otherwise. A configuration true with them decided
is "vulnerable"; one true only if they held is "needs_platform". The logic is three-valued
(true, false, unknown: a platform criterion the OS guess does not decide), so a negated unknown
stays unknown rather than turning true. Then the distribution build in the banner, if any, goes
to the Debian tracker (backports.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Literal, Protocol

import msgspec

from netscand.vuln import backports, cpe, versions
from netscand.vuln.cpe import ANY, NA, Cpe
from netscand.vuln.records import (
    Configuration,
    CpeMatch,
    CveRecord,
    Finding,
    Node,
)

# Names NVD (and nmap's CPEs) have used for one product, so a port named by any of them is checked
# against all: nginx moved from igor_sysoev to nginx to f5 (F5's recent records say
# nginx_open_source); Redis from redislabs to redis; vsftpd is beasts' (older records:
# vsftpd_project; nmap: vsftpd); MySQL's older records are mysql's, newer ones oracle's.
# MariaDB is mariadb:mariadb throughout, and not MySQL: MySQL's records do not name it.
ALIASES = (
    frozenset({("f5", "nginx"), ("f5", "nginx_open_source"), ("nginx", "nginx"), ("igor_sysoev", "nginx")}),
    frozenset({("redis", "redis"), ("redislabs", "redis")}),
    frozenset({("beasts", "vsftpd"), ("vsftpd_project", "vsftpd"), ("vsftpd", "vsftpd")}),
    frozenset({("oracle", "mysql"), ("mysql", "mysql")}),
)
# An OS guess (data/os-signatures.toml's names: Linux, Windows, FreeBSD, macOS, Cisco IOS; or a
# banner's hint: Debian, Ubuntu, ...) -> the vendors of the platform CPEs it is.
# A guess names no OS version, so a platform criterion's version (debian_linux 11.0) is not checked.
# A plain "Linux" is the kernel only: a distribution's platform needs a guess that names it
# (every distribution runs the Linux kernel, so naming one also satisfies linux:linux_kernel).
_OS_VENDORS = (
    (re.compile(r"linux", re.IGNORECASE), frozenset({"linux"})),
    (re.compile(r"debian", re.IGNORECASE), frozenset({"linux", "debian"})),
    (re.compile(r"ubuntu", re.IGNORECASE), frozenset({"linux", "canonical"})),
    (re.compile(r"raspbian", re.IGNORECASE), frozenset({"linux", "raspberrypi"})),
    (re.compile(r"centos", re.IGNORECASE), frozenset({"linux", "centos"})),
    (re.compile(r"red ?hat|rhel", re.IGNORECASE), frozenset({"linux", "redhat"})),
    (re.compile(r"fedora", re.IGNORECASE), frozenset({"linux", "fedoraproject"})),
    (re.compile(r"android", re.IGNORECASE), frozenset({"linux", "google"})),
    (re.compile(r"windows", re.IGNORECASE), frozenset({"microsoft"})),
    (re.compile(r"bsd", re.IGNORECASE), frozenset({"freebsd", "openbsd", "netbsd"})),
    (re.compile(r"mac ?os|darwin", re.IGNORECASE), frozenset({"apple"})),
    (re.compile(r"cisco", re.IGNORECASE), frozenset({"cisco"})),
)
_PLATFORMS_SHOWN = 3  # evidence stays a line: some records list dozens of firmware names
_CVE_ID = re.compile(r"CVE-(\d+)-(\d+)")
Truth = bool | None  # None: unknown
Oracle = Callable[[CpeMatch], Truth]
Verdict = tuple[Literal["vulnerable", "needs_platform"], str]  # status, evidence


class CveSource(backports.Tracker, Protocol):
    """What the matcher reads of a CveStore: its candidates, and the tracker's fixed_in."""

    def candidates(self, vendor: str, product: str) -> list[CveRecord]: ...


class PortMatch(msgspec.Struct, frozen=True):
    findings: tuple[Finding, ...] = ()
    note: str | None = None  # why nothing could be matched, or what could not be compared


class Matcher:
    def __init__(self, store: CveSource) -> None:
        self._store = store

    def match(self, cpe_name: str | None, banner: str | None, os_name: str | None) -> PortMatch:
        """The findings for one port (pure given the store; never raises on any text)."""
        port = cpe.parse(cpe_name)
        if port is None:
            return PortMatch(note="no CPE name: no CVE can be matched" if not cpe_name
                             else "not a CPE 2.3 name: no CVE can be matched")
        if port.version in (ANY, NA):
            return PortMatch(note="version unknown: no CVE can be matched")
        checked = _Port(port, versions.parse(port.version, port.update), os_name)
        findings = [f for record in self._records(port) if (f := checked.finding(record))]
        if findings:
            findings = self._backported(findings, port, banner)
        findings.sort(key=_order)
        return PortMatch(tuple(findings), checked.note())

    def _records(self, port: Cpe) -> list[CveRecord]:
        seen: dict[str, CveRecord] = {}
        for vendor, product in sorted(_names(port)):
            for record in self._store.candidates(vendor, product):  # never a rejected record
                seen.setdefault(record.id, record)
        return list(seen.values())

    def _backported(self, findings: list[Finding], port: Cpe, banner: str | None) -> list[Finding]:
        # needs_platform findings too: a build with the fix is fixed whatever the platform.
        upstream = f"{port.version}{port.update if port.update not in (ANY, NA) else ''}"
        found = backports.build(banner, upstream)  # once per port, not per finding
        package = package_of(port.vendor, port.product)
        return [backports.decide(f, found, package, self._store) for f in findings]


def package_of(vendor: str, product: str) -> str | None:
    """The Debian source package of a product, by any of its names (PACKAGES lists one of them)."""
    return next((backports.PACKAGES[n] for n in sorted(_aliases((vendor, product))) if n in backports.PACKAGES), None)


def _names(port: Cpe) -> frozenset[tuple[str, str]]:
    return _aliases((port.vendor, port.product))


def _aliases(own: tuple[str, str]) -> frozenset[tuple[str, str]]:
    return next((group for group in ALIASES if own in group), frozenset({own}))


def _order(finding: Finding) -> tuple[float, int, int, str]:
    number = _CVE_ID.fullmatch(finding.id)
    year, serial = (int(number[1]), int(number[2])) if number else (0, 0)
    return (-(finding.cvss if finding.cvss is not None else -1.0), year, serial, finding.id)


class _Port:
    """One port's CPE and version, checked against records; remembers what it could not compare."""

    def __init__(self, port: Cpe, version: versions.VendorVersion | None, os_name: str | None) -> None:
        self.port = port
        self.names = _names(port)
        self.version = version
        self.os_name = os_name
        self.uncompared: set[str] = set()

    def note(self) -> str | None:
        if not self.uncompared:
            return None
        return f"version {self.port.version} could not be compared with {len(self.uncompared)} criteria"

    def finding(self, record: CveRecord) -> Finding | None:
        """The record's finding for this port: "vulnerable" if any configuration holds, else
        "needs_platform" if one would with its platform, else None."""
        verdicts = [v for c in record.configurations if (v := self._configuration(c))]
        if not verdicts:
            return None
        status, evidence = min(verdicts, key=lambda v: v[0] != "vulnerable")  # the first vulnerable one
        return Finding(id=record.id, status=status, cvss=record.cvss, severity=record.severity,
                       summary=record.summary, published=record.published, evidence=evidence)

    def _configuration(self, configuration: Configuration) -> Verdict | None:
        hit = next((m for m in _matches(configuration) if m.vulnerable and self._own(m)), None)
        if hit is None:
            return None
        holds = _holds(configuration, self._truth)
        if holds:
            return "vulnerable", _evidence(hit)
        if holds is None:
            platforms = [m.criteria for m in _matches(configuration) if self._needs(m)]
            shown = " or ".join(platforms[:_PLATFORMS_SHOWN]) + (" or ..." if len(platforms) > _PLATFORMS_SHOWN else "")
            return "needs_platform", f"{_evidence(hit)}; needs {shown} (OS guess: {self.os_name or 'none'})"
        return None

    def _own(self, criterion: CpeMatch) -> bool:
        """Whether the criterion names this port's product and its version matches."""
        name = cpe.parse(criterion.criteria)
        if name is None or name.part not in (self.port.part, ANY) or (name.vendor, name.product) not in self.names:
            return False
        if not _extras_agree(name, self.port):
            return False
        verdict = self._version(name, criterion)
        if verdict is None:
            self.uncompared.add(criterion.criteria)
        return bool(verdict)

    def _version(self, name: Cpe, criterion: CpeMatch) -> bool | None:
        bounds = versions.Range.of(criterion)
        if name.version == NA:
            return False
        if self.version is None:
            return None
        if name.version == ANY:
            return versions.in_range(self.version, bounds) if bounds.bounded() else True
        return self._exact(name)

    def _exact(self, name: Cpe) -> bool | None:
        if name.update == NA and self.version is not None and self.version.update is not None:
            return False  # "-": the release itself, not one of its updates
        wanted = versions.parse(name.version, None if name.update in (ANY, NA) else name.update)
        if wanted is None or self.version is None:
            return None
        return versions.compare(wanted, self.version) == 0

    def _needs(self, criterion: CpeMatch) -> bool:
        """A "running on/with" criterion: not vulnerable itself, and not this port's product."""
        name = cpe.parse(criterion.criteria)
        return not criterion.vulnerable and (name is None or (name.vendor, name.product) not in self.names)

    def _truth(self, criterion: CpeMatch) -> Truth:
        """A platform criterion is true when the OS guess is that OS, else unknown (a guess can be wrong)."""
        if self._needs(criterion):
            name = cpe.parse(criterion.criteria)
            return True if name is not None and name.part == "o" and _runs(self.os_name, name) else None
        return self._own(criterion)


def _matches(configuration: Configuration) -> Iterable[CpeMatch]:
    return (m for node in configuration.nodes for m in node.matches)


def _holds(configuration: Configuration, oracle: Oracle) -> Truth:
    return _combine([_node(node, oracle) for node in configuration.nodes], configuration.operator,
                    configuration.negate)


def _node(node: Node, oracle: Oracle) -> Truth:
    return _combine([oracle(m) for m in node.matches], node.operator, node.negate)


def _combine(results: list[Truth], operator: str, negate: bool) -> Truth:
    """Kleene's AND/OR over true, false and unknown (None); an empty list is false."""
    if not results:
        return False
    decisive = operator != "AND"  # the value that settles it: false for AND, true for OR
    if decisive in results:
        value: Truth = decisive
    elif None in results:
        return None  # negated unknown stays unknown
    else:
        value = not decisive
    return value != negate


def _extras_agree(name: Cpe, port: Cpe) -> bool:
    """edition ... other: a value the criterion pins must be the port's, unless the port's is unknown."""
    return all(want in (ANY, NA) or have in (ANY, want) for want, have in zip(name.extras(), port.extras()))


def _runs(os_name: str | None, platform: Cpe) -> bool:
    """Whether the OS guess is the operating system a platform criterion names."""
    if not os_name:
        return False
    return any(pattern.search(os_name) and platform.vendor in vendors for pattern, vendors in _OS_VENDORS)


def _evidence(criterion: CpeMatch) -> str:
    bounds = versions.Range.of(criterion)
    return f"{criterion.criteria} {bounds}" if bounds.bounded() else criterion.criteria
