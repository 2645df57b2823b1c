"""The CVE layer's records, as the rest of netscand sees them: NVD's shape reduced to what
matching and reporting need (the importer converts; the store keeps them; the matcher reads)."""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

Severity = Literal["critical", "high", "medium", "low", "none"]
SEVERITIES: tuple[str, ...] = get_args(Severity)  # worst first


class CpeMatch(msgspec.Struct, frozen=True):
    """One cpeMatch criterion: a CPE 2.3 pattern, and a version range when its version is `*`."""

    criteria: str  # CPE 2.3 formatted string
    vulnerable: bool = True
    start_including: str | None = None  # versionStartIncluding
    start_excluding: str | None = None
    end_including: str | None = None
    end_excluding: str | None = None


class Node(msgspec.Struct, frozen=True):
    operator: Literal["OR", "AND"] = "OR"
    negate: bool = False
    matches: tuple[CpeMatch, ...] = ()


class Configuration(msgspec.Struct, frozen=True):
    operator: Literal["OR", "AND"] = "OR"  # NVD omits it for a single node: OR
    negate: bool = False
    nodes: tuple[Node, ...] = ()


class CveRecord(msgspec.Struct, frozen=True):
    id: str  # "CVE-2024-6387"
    published: str  # ISO 8601 as NVD writes it
    modified: str
    status: str  # vulnStatus: "Analyzed", "Rejected", ...
    summary: str  # the English description
    cvss: float | None  # the base score of the newest CVSS version scored (v4.0, v3.1, v3.0, v2)
    cvss_version: str | None  # "4.0" | "3.1" | "3.0" | "2.0"
    severity: Severity | None
    configurations: tuple[Configuration, ...] = ()


class Finding(msgspec.Struct, frozen=True):
    id: str
    status: Literal["vulnerable", "fixed_by_distribution", "needs_platform"]
    cvss: float | None
    severity: Severity | None
    summary: str
    published: str
    # The criterion that matched, e.g. "cpe:2.3:a:openbsd:openssh:*:*:*:*:*:*:*:* < 9.8p1"
    evidence: str
    fixed_version: str | None = None  # fixed_by_distribution: the distribution's fixed build


class SourceStatus(msgspec.Struct, frozen=True):
    name: str  # "nvd" | "debian-tracker"
    records: int
    newest: str | None  # newest record's modified time (NVD) / import time (tracker)
    imported_at: str | None  # when this source was last imported (UTC ISO 8601)


class CveStatus(msgspec.Struct, frozen=True):
    loaded: bool  # any NVD record at all
    sources: tuple[SourceStatus, ...]
    updated_at: str | None  # the latest imported_at
    age_seconds: float | None


class TrackerEntry(msgspec.Struct, frozen=True):
    """What the Debian Security Tracker says of one CVE in one source package in one release."""

    status: str  # "resolved" | "open" | "undetermined"
    fixed_version: str | None  # the Debian version that fixed it (None when not fixed)
