"""CVE findings as both command lines show them (netscanctl result, netscand scan)."""

from __future__ import annotations

from netscand.vuln.records import SEVERITIES


def by_severity(findings: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """(where, finding) pairs, most severe first, then by score and id; unscored ones last."""
    return sorted(findings, key=lambda wf: (SEVERITIES.index(wf[1]["severity"] or "none"),
                                            -(wf[1]["cvss"] or 0), wf[1]["id"]))


def status_text(finding: dict) -> str:
    """A finding's status, with the distribution's fixed build when it has one."""
    fixed = finding.get("fixed_version")
    return finding["status"] + (f" in {fixed}" if fixed else "")


def data_line(cve_data: dict) -> str:
    """What CVE data a scan was matched against, or why none."""
    if not cve_data["loaded"]:
        return f"CVE: {cve_data['note']}"
    sources = ", ".join(f"{s['name']} ({s['records']} records)" for s in cve_data["sources"])
    return f"CVE data: {sources}; updated {cve_data['updated_at']}"
