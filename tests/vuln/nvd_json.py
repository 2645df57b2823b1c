"""Small hand-made NVD CVE JSON 2.0 records and Debian tracker files for the importer's tests
(the real records are in fixtures/, for the matcher's)."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

OPENSSH = "cpe:2.3:a:openbsd:openssh:*:*:*:*:*:*:*:*"


def cve(cve_id: str = "CVE-2024-6387", *, modified: str = "2024-09-01T00:00:00.000",
        criteria: str = OPENSSH, **fields: Any) -> dict[str, Any]:
    """One record as NVD writes it (with fields the importer ignores), changed by `fields`."""
    record = {
        "id": cve_id, "sourceIdentifier": "secalert@redhat.com",
        "published": "2024-07-01T13:15:06.467", "lastModified": modified, "vulnStatus": "Analyzed",
        "cveTags": [],
        "descriptions": [{"lang": "es", "value": "Condición de carrera"},
                         {"lang": "en", "value": "A signal handler race condition in sshd."}],
        "metrics": {"cvssMetricV31": [
            {"source": "secalert@redhat.com", "type": "Secondary",
             "cvssData": {"version": "3.1", "vectorString": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H",
                          "baseScore": 8.1, "baseSeverity": "HIGH"},
             "exploitabilityScore": 2.2, "impactScore": 5.9}]},
        "weaknesses": [{"source": "secalert@redhat.com", "type": "Primary",
                        "description": [{"lang": "en", "value": "CWE-364"}]}],
        "configurations": [{"nodes": [{"operator": "OR", "negate": False, "cpeMatch": [
            {"vulnerable": True, "criteria": criteria, "versionStartIncluding": "8.5",
             "versionEndExcluding": "9.8", "matchCriteriaId": "114F2C8F-3F24-44DB-B6F4-B1B4CB6BC2E7"}]}]}],
        "references": [{"url": "https://www.openwall.com/lists/oss-security/2024/07/01/3", "source": "x"}],
    }
    record.update(fields)
    return copy.deepcopy(record)


def feed(*records: dict[str, Any]) -> dict[str, Any]:
    """A feed file (or an API response: the same shape) holding `records`."""
    return {"resultsPerPage": len(records), "startIndex": 0, "totalResults": len(records),
            "format": "NVD_CVE", "version": "2.0", "timestamp": "2024-09-02T00:00:00.000",
            "vulnerabilities": [{"cve": r} for r in records]}


def tracker(*entries: tuple[str, str, str, str, str | None]) -> dict[str, Any]:
    """The Debian tracker's shape from (package, cve, release, status, fixed_version) rows."""
    data: dict[str, Any] = {}
    for package, cve_id, release, status, fixed in entries:
        record = data.setdefault(package, {}).setdefault(cve_id, {
            "description": "x", "scope": "remote", "debianbug": 1074125, "releases": {}})
        release_entry: dict[str, Any] = {"status": status, "repositories": {release: fixed or "1.0-1"},
                                         "urgency": "not yet assigned"}
        if fixed is not None:
            release_entry["fixed_version"] = fixed
        record["releases"][release] = release_entry
    return data


def write(path: Path, data: Any, gzipped: bool = False) -> Path:
    text = data if isinstance(data, bytes) else json.dumps(data).encode()
    path.write_bytes(gzip.compress(text) if gzipped else text)
    return path
