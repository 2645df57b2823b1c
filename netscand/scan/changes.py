"""What a scan covered, from its engine spec (the inventory's merge) or from its stored row (the
diff of two stored scans), and that diff: the inventory's comparison (store/compare.py) applied
to two results directly.

A stored scan's targets are its target text's addresses, blocks and ranges; a hostname in it is
not resolved again (it may name other addresses now), so it covers the addresses the scan found.
Its ports are those its profile and options give (profiles.resolve), as when it ran.
"""

from __future__ import annotations

import asyncio
from typing import Any

from netscand.scan.errors import ScanError
from netscand.scan.profiles import ScanRequest, resolve
from netscand.scan.spec import ScanSpec
from netscand.scan.targets import TargetError, Targets, parse_targets
from netscand.store import Store, results, scans
from netscand.store.compare import Covered, compare
from netscand.store.threads import StoreThreads

_REQUEST_FIELDS = frozenset(ScanRequest.__dataclass_fields__)


def covered_by(spec: ScanSpec) -> Covered:
    """What a running scan's spec looks at (CVEs: asked for; the merge checks the match had data)."""
    return Covered(spec.targets.ranges, frozenset(spec.ports), frozenset(spec.udp_ports), spec.detect_services,
                   spec.cve_match)


def stored_covered(scan: dict[str, Any], found: list[dict[str, Any]]) -> Covered:
    """What a stored scan looked at: its literal targets and whatever it found, its profile's
    ports, and CVEs if its match had data."""
    req = ScanRequest(target=scan["target"], profile=scan["profile"],
                      **{k: v for k, v in scan["options"].items() if k in _REQUEST_FIELDS})
    spec = resolve(req, _literal(scan["target"]), rate=1.0, retries=0)
    loaded = bool(((scan["cve"] or {}).get("cve_data") or {}).get("loaded"))
    return Covered(spec.targets.ranges, frozenset(spec.ports), frozenset(spec.udp_ports), spec.detect_services,
                   spec.cve_match and loaded).with_addresses(d["ip"] for d in found)


def _literal(target: str | list[str]) -> Targets:
    """The addresses a stored target writes out, its hostnames left out."""
    tokens = [target] if isinstance(target, str) else target
    ranges: list[tuple[int, int]] = []
    for token in (t for item in tokens for t in item.replace(",", " ").split()):
        try:
            ranges += parse_targets(token, resolve=lambda _: []).ranges
        except TargetError:
            continue  # a hostname: see the module's docstring
    return Targets(tuple(ranges))


class Diff:
    def __init__(self, store: Store, io: StoreThreads) -> None:
        self.store = store
        self.io = io

    async def between(self, scan: dict[str, Any], against: dict[str, Any]) -> list[dict[str, Any]]:
        """The changes from `against` to `scan` (two stored scans' rows, completed), over what
        both covered: found devices by identity, ports both probed, services both detected,
        CVEs both matched."""
        for row in (scan, against):
            if row["status"] != "completed":
                raise ScanError(409, "Scan not completed",
                                f"scan {row['id']} is {row['status']}: only completed scans are compared (one "
                                "that did not complete did not look at all it targeted)")
        after, before = await self.io.read(self.store.call, "cannot read the results to compare", _results,
                                           scan["id"], against["id"])
        return await asyncio.to_thread(_compare, scan, after, against, before)


def _results(db: Any, *scan_ids: str) -> list[list[dict[str, Any]]]:
    if any(scans.get(db, scan_id) is None for scan_id in scan_ids):
        raise ScanError(404, "Scan not found", "a scan compared was deleted meanwhile")
    return [results.result(db, scan_id) for scan_id in scan_ids]


def _compare(scan: dict[str, Any], after: list[dict[str, Any]], against: dict[str, Any],
             before: list[dict[str, Any]]) -> list[dict[str, Any]]:
    covered = stored_covered(against, before) & stored_covered(scan, after)
    if covered.services:  # the earlier scan's services came from detection too
        before = [d | {"detected": [f"{p['port']}/{p['protocol']}" for p in d["ports"]]} for d in before]
    return compare(before, after, covered)
