"""CVE matching, the stage after identification (stages.py): each port that service detection
named with a CPE is matched against the CVE data (netscand/vuln), with its banner (a
distribution's build says which CVEs it has patched) and its device's OS guess (configurations
that need a platform). The same matching re-matches a stored result (POST .../rematch).

Matching reads SQLite and compares versions, so it runs in a worker thread, with the building
of the devices to match (from the hosts with a CPE) and their filtering: nothing of it holds the
event loop. Within one match, a (cpe, banner, OS) seen before is not matched again: a network of
alike hosts runs the same sshd build on each.

What it adds to a result (docs/api.md):
- a port with a CPE: `cves`, its findings, and `cve_note` when nothing can be matched (the
  version is unknown);
- a device with such a port: `cve_counts`, its "vulnerable" findings by severity;
- the scan (its `cve` row): `cve_data`, the data's sources and when they were imported, or that
  none is loaded (the scan completes all the same); and, with data, `cve_counts` of all devices.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, get_args, get_type_hints

import msgspec

from netscand.scan.errors import ScanError
from netscand.scan.result import Host
from netscand.scan.runner import ScanRun
from netscand.vuln.errors import CveStoreError
from netscand.vuln.match import Matcher, PortMatch
from netscand.vuln.records import (
    SEVERITIES,
    CveRecord,
    CveStatus,
    Finding,
    TrackerEntry,
)
from netscand.vuln.store import CveStore

# Defined once, by the records' types (netscand/vuln/records.py).
FINDING_STATUSES: tuple[str, ...] = get_args(get_type_hints(Finding)["status"])
NO_DATA = "no CVE data is loaded: run `netscand cve sync` or `netscand cve import`"
CVE_FIELDS = ("cves", "cve_note")  # a port's; replaced whole by a match

Device = dict[str, Any]
MatchPort = Callable[[str | None, str | None, str | None], PortMatch]  # Matcher.match


class CveData(Protocol):
    """What matching reads of a CveStore."""

    def status(self) -> CveStatus: ...

    def candidates(self, vendor: str, product: str) -> list[CveRecord]: ...

    def fixed_in(self, package: str, cve_id: str) -> dict[str, TrackerEntry]: ...


class OpenedOnUse:
    """The CveStore at `path`, opened (made when missing) at its first use, and again at each
    use while it can't be: a cve.db that is not a database, or held by a long import, costs the
    scans their CVEs (each says why) and the CVE routes a 503, never the daemon its start; and
    once fixed it serves without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._store: CveStore | None = None

    def _opened(self) -> CveStore:
        if self._store is None:  # two threads may both open it: the same file, made once
            self._store = CveStore(self.path)
        return self._store

    def status(self) -> CveStatus:
        return self._opened().status()

    def candidates(self, vendor: str, product: str) -> list[CveRecord]:
        return self._opened().candidates(vendor, product)

    def fixed_in(self, package: str, cve_id: str) -> dict[str, TrackerEntry]:
        return self._opened().fixed_in(package, cve_id)


@dataclass(frozen=True)
class Matched:
    """A match's outcome: the devices with their CVE fields (as Store.put_cves takes them) and
    the scan's `cve` (its `cve_data` and `cve_counts`)."""

    devices: list[Device] = field(default_factory=list)
    scan: dict[str, Any] = field(default_factory=dict)


class CveMatching:
    def __init__(self, store: CveData) -> None:
        self.store = store
        self.matcher = Matcher(store)

    @staticmethod
    def wanted(run: ScanRun) -> bool:
        return run.spec.cve_match

    async def run(self, run: ScanRun) -> Matched:
        """The CVEs of the scan's devices that have a port with a CPE. CVE data that can't be
        read is said so, as missing data is: the scan completes."""
        try:
            return await asyncio.to_thread(self._match_run, run)
        except CveStoreError as exc:
            return Matched([], {"cve_data": {"loaded": False, "note": f"the CVE data can't be read: {exc}"}})

    async def rematch(self, devices: list[Device]) -> Matched:
        """`devices` (a stored result's: Store.cve_devices) matched again; 503 when the CVE data
        can't be read, which must not clear the findings they have. Only devices with a CPE or
        CVE fields are matched and rewritten: the others have nothing to change."""
        try:
            return await asyncio.to_thread(self._match_concerned, devices)
        except CveStoreError as exc:
            raise unreadable(exc) from None

    async def status(self) -> dict[str, Any]:
        """GET /api/v1/cve/status: the CveStatus."""
        try:
            return msgspec.to_builtins(await asyncio.to_thread(self.store.status))
        except CveStoreError as exc:
            raise unreadable(exc) from None

    def _match_run(self, run: ScanRun) -> Matched:
        """Blocking. The run is over (swept and identified): its hosts no longer change while
        this reads them."""
        result = run.result
        return self.match([result.device(h, run.spec.profiling) for h in result.up_hosts if _has_cpe(h)])

    def _match_concerned(self, devices: list[Device]) -> Matched:
        """Blocking."""
        return self.match([d for d in devices if any(p.get("cpe") or p.keys() & CVE_FIELDS for p in d["ports"])])

    def match(self, devices: list[Device]) -> Matched:
        """Blocking. `devices` as a result document has them; without CVE data, their CVE
        fields are cleared and the scan says that none is loaded."""
        status = self.store.status()
        if not status.loaded:
            return Matched([_annotated(None, d) for d in devices], {"cve_data": {"loaded": False, "note": NO_DATA}})
        # Within this match only: the data may change (an import) before the next one.
        memo = functools.cache(self.matcher.match)
        matched = [_annotated(memo, d) for d in devices]
        totals = [d["cve_counts"] for d in matched if d["cve_counts"]]
        return Matched(matched, {"cve_data": cve_data(status),
                                 "cve_counts": {s: sum(c[s] for c in totals) for s in SEVERITIES}})


def unreadable(exc: CveStoreError) -> ScanError:
    return ScanError(503, "CVE data unavailable", f"the CVE data can't be read: {exc}",
                     headers={"Retry-After": "5"})


def cve_data(status: CveStatus) -> dict[str, Any]:
    return {"loaded": True, "sources": msgspec.to_builtins(status.sources), "updated_at": status.updated_at}


def cve_counts(ports: list[dict[str, Any]]) -> dict[str, int]:
    """The ports' "vulnerable" findings by severity (a finding without a score is counted under no key)."""
    counts = dict.fromkeys(SEVERITIES, 0)
    for finding in (f for p in ports for f in p.get("cves", ())):
        if finding["status"] == "vulnerable" and finding["severity"] is not None:
            counts[finding["severity"]] += 1
    return counts


def _has_cpe(h: Host) -> bool:
    return any(info.cpe for info in (*h.services.values(), *h.udp.values()))


def _annotated(matcher: MatchPort | None, device: Device) -> Device:
    """The device's ports with their CVE fields (none without a matcher), and its counts when a
    port was matched."""
    ports = [_port(matcher, p, device.get("os_guess")) for p in device["ports"]]
    matched = [p for p in ports if "cves" in p]
    return {"ip": device["ip"], "ports": ports, "cve_counts": cve_counts(matched) if matched else None}


def _port(matcher: MatchPort | None, port: dict[str, Any], os_name: str | None) -> dict[str, Any]:
    port = {k: v for k, v in port.items() if k not in CVE_FIELDS}
    if matcher is None or not port.get("cpe"):
        return port
    found = matcher(port["cpe"], port.get("banner"), os_name)
    port["cves"] = [_finding(f) for f in found.findings]
    if found.note:
        port["cve_note"] = found.note
    return port


def _finding(finding: Finding) -> dict[str, Any]:
    shown = msgspec.structs.asdict(finding)
    if shown["fixed_version"] is None:  # only fixed_by_distribution has one
        del shown["fixed_version"]
    return shown


def merged(devices: list[Device], matched: Matched) -> list[Device]:
    """A result document's devices with a match's CVE fields (the one-shot scan's, which has
    no store to write them to)."""
    by_ip = {d["ip"]: d for d in matched.devices}
    return [_merge(d, by_ip[d["ip"]]) if d["ip"] in by_ip else d for d in devices]


def _merge(device: Device, found: Device) -> Device:
    extra = {"cve_counts": found["cve_counts"]} if found["cve_counts"] else {}
    return {**device, "ports": found["ports"], **extra}
