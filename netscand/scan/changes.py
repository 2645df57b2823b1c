"""What a scan covered, from its engine spec (the inventory's merge, which keeps it with the scan)
or as kept (the diff of two stored scans), and that diff: the inventory's comparison
(store/compare.py) applied to two results directly.

A scan completed before coverage was kept has it rebuilt from its row: its target text's
addresses, blocks and ranges (a hostname in it is not resolved again: it may name other
addresses now, so it covers the addresses the scan found) and the ports its profile and options
give (profiles.resolve) — unless today's profiles refuse them, which is a 409.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from netscand.scan.errors import ScanError
from netscand.scan.profiles import ScanRequest, resolve
from netscand.scan.result import well_known_service
from netscand.scan.spec import ScanSpec
from netscand.scan.targets import TargetError, Targets, parse_targets
from netscand.store import Store, inventory, results, scans
from netscand.store.compare import Covered, compare, port_name
from netscand.store.threads import StoreThreads

# Devices of both results a diff compares at most: a diff is computed whole, in memory, per
# request (then cached); two /16 results are 131,072.
MAX_DEVICES = 140_000
CACHED = 16  # computed diffs kept: the pages of a few diffs being read


def covered_by(spec: ScanSpec) -> Covered:
    """What a running scan's spec looks at (CVEs: asked for; the merge checks the match had data)."""
    return Covered(spec.targets.ranges, frozenset(spec.ports), frozenset(spec.udp_ports), spec.detect_services,
                   spec.cve_match, well_known_service)


def stored_covered(scan: dict[str, Any], kept: Covered | None, found: list[dict[str, Any]]) -> Covered:
    """What a stored scan looked at: as kept when it was merged (else rebuilt from its row) and
    whatever it found."""
    covered = kept if kept is not None else _rebuilt(scan)
    return Covered(covered.ranges, covered.tcp, covered.udp, covered.services, covered.cves,
                   well_known_service).with_addresses(d["ip"] for d in found)


def _rebuilt(scan: dict[str, Any]) -> Covered:
    """Its literal targets, its profile's ports, and CVEs if its match had data."""
    try:
        req = ScanRequest.stored(scan)
        spec = resolve(req, _literal(scan["target"]), rate=1.0, retries=0)
    except (KeyError, TypeError, ValueError) as exc:
        raise ScanError(409, "Scan not comparable",
                        f"scan {scan['id']} did not keep what it covered, and its request no longer resolves to "
                        f"ports ({exc}): it cannot be compared") from None
    loaded = bool(((scan["cve"] or {}).get("cve_data") or {}).get("loaded"))
    return Covered(spec.targets.ranges, frozenset(spec.ports), frozenset(spec.udp_ports), spec.detect_services,
                   spec.cve_match and loaded)


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
    """Diffs of completed scans, the last few kept: a completed scan's result does not change,
    and each page of a diff would compute it whole again."""

    def __init__(self, store: Store, io: StoreThreads) -> None:
        self.store = store
        self.io = io
        self._cache: OrderedDict[tuple[str, str], list[dict[str, Any]]] = OrderedDict()

    async def between(self, scan: dict[str, Any], against: dict[str, Any]) -> list[dict[str, Any]]:
        """The changes from `against` to `scan` (two stored scans' rows, completed), over what
        both covered: found devices by identity, ports both probed, services both detected,
        CVEs both matched."""
        for row in (scan, against):
            if row["status"] != "completed":
                raise ScanError(409, "Scan not completed",
                                f"scan {row['id']} is {row['status']}: only completed scans are compared (one "
                                "that did not complete did not look at all it targeted)")
        key = (scan["id"], against["id"])
        if (found := self._cache.get(key)) is not None:
            self._cache.move_to_end(key)
            return found
        stored = await self.io.read(self.store.call, "cannot read the results to compare", _stored,
                                    scan["id"], against["id"])
        found = await self.io.read(_compare, scan, against, *stored)
        self._cache[key] = found
        while len(self._cache) > CACHED:
            self._cache.popitem(last=False)
        return found


Stored = tuple[list[dict[str, Any]], Covered | None, list[dict[str, Any]], Covered | None]


def _stored(db: Any, scan_id: str, against_id: str) -> Stored:
    """Both scans' results and kept coverage (later first), if not too large to compare."""
    if any(scans.get(db, i) is None for i in (scan_id, against_id)):
        raise ScanError(404, "Scan not found", "a scan compared was deleted meanwhile")
    size = sum(results.counts(db, i)[0] for i in (scan_id, against_id))
    if size > MAX_DEVICES:
        raise ScanError(409, "Scans too large to compare",
                        f"the two scans found {size} devices; a diff compares {MAX_DEVICES} at most: compare "
                        "smaller scans, or follow the inventory's changes (GET /api/v1/scans/{id}/changes)")
    return (results.result(db, scan_id), inventory.covered_of(db, scan_id),
            results.result(db, against_id), inventory.covered_of(db, against_id))


def _compare(scan: dict[str, Any], against: dict[str, Any], after: list[dict[str, Any]], kept: Covered | None,
             before: list[dict[str, Any]], kept_before: Covered | None) -> list[dict[str, Any]]:
    earlier = stored_covered(against, kept_before, before)
    covered = earlier & stored_covered(scan, kept, after)
    if covered.services:  # the earlier scan's ports that its detection identified
        before = [d | {"detected": [port_name((p["port"], p["protocol"])) for p in d["ports"] if earlier.detected(p)]}
                  for d in before]
    return compare(before, after, covered)
