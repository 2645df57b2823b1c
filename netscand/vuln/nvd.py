"""NVD CVE JSON 2.0, read into CveRecords: the feed files (nvdcve-2.0-2024.json.gz and the
modified/recent ones), an API response (the same shape), or one record as the API's
"vulnerabilities" items hold it ({"cve": {...}}) or bare.

Decoded by msgspec against the part of NVD's schema matching needs (unknown fields are
NVD's to add, so they are ignored), typed and bounded, so a record is either whole or refused
with its id and the path of what is wrong in it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from netscand.vuln.errors import ImportRefused
from netscand.vuln.inputs import Source, name_of, named, read_bytes, reason, shallow
from netscand.vuln.records import Configuration, CpeMatch, CveRecord, Node, Severity

CveId = Annotated[str, Meta(pattern="^CVE-[0-9]{4}-[0-9]{4,}$(?!\\n)")]
# CPE 2.3 formatted string: part then ten components, each non-empty, `\` quoting one character.
Cpe = Annotated[str, Meta(pattern="^cpe:2\\.3:[aho*-](?::(?:[^:\\\\\\s]|\\\\[^\\s])+){10}$(?!\\n)")]
Score = Annotated[float, Meta(ge=0.0, le=10.0)]
Operator = Literal["OR", "AND"]


class _Struct(msgspec.Struct, rename="camel"):
    pass


class _CpeMatch(_Struct):
    criteria: Cpe
    vulnerable: bool = True
    version_start_including: str | None = None
    version_start_excluding: str | None = None
    version_end_including: str | None = None
    version_end_excluding: str | None = None


class _Node(_Struct):
    operator: Operator = "OR"
    negate: bool = False
    cpe_match: tuple[_CpeMatch, ...] = ()


class _Configuration(_Struct):
    operator: Operator = "OR"
    negate: bool = False
    nodes: tuple[_Node, ...] = ()


_Severity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW", "NONE"]


class _CvssData(_Struct):
    base_score: Score
    base_severity: _Severity


class _Metric(_Struct):
    source: str
    cvss_data: _CvssData
    type: Literal["Primary", "Secondary"] = "Secondary"

    @property
    def scored(self) -> tuple[float, _Severity]:
        return self.cvss_data.base_score, self.cvss_data.base_severity


class _V2Data(_Struct):
    base_score: Score


class _V2Metric(_Struct):
    """CVSS v2 keeps its severity beside cvssData, not in it."""

    source: str
    cvss_data: _V2Data
    base_severity: _Severity
    type: Literal["Primary", "Secondary"] = "Secondary"

    @property
    def scored(self) -> tuple[float, _Severity]:
        return self.cvss_data.base_score, self.base_severity


class _Metrics(_Struct):
    cvss_metric_v40: tuple[_Metric, ...] = ()
    cvss_metric_v31: tuple[_Metric, ...] = ()
    cvss_metric_v30: tuple[_Metric, ...] = ()
    cvss_metric_v2: tuple[_V2Metric, ...] = ()


class _Description(_Struct):
    lang: str
    value: str


class _Cve(_Struct):
    id: CveId
    published: datetime
    last_modified: datetime
    vuln_status: str = "Unknown"  # absent from records before NVD's 2.0 schema
    descriptions: tuple[_Description, ...] = ()
    metrics: _Metrics = msgspec.field(default_factory=_Metrics)
    configurations: tuple[_Configuration, ...] = ()


class _Item(_Struct):
    cve: _Cve


class _Id(msgspec.Struct, frozen=True):
    """Only what names a record in an error, however wrong the rest of it is."""

    id: object = None


class _ItemId(msgspec.Struct, frozen=True):
    cve: _Id = _Id()


# What a pattern stands for, said to whoever reads the error: field -> expected
WORDS = {"id": "a CVE id such as CVE-2024-6387",
         "criteria": "a CPE 2.3 string such as cpe:2.3:a:openbsd:openssh:9.2:p1:*:*:*:*:*:*"}
_RAWS = msgspec.json.Decoder(tuple[msgspec.Raw, ...])
_ITEM = msgspec.json.Decoder(_Item)
_CVE = msgspec.json.Decoder(_Cve)


def read(source: Source) -> list[CveRecord]:
    """Every record of one NVD file, or ImportRefused naming the file, the record and why."""
    path, data = name_of(source), read_bytes(source)
    with shallow(path):
        items, bare = _items(path, data)
        return [_record(_decoded(path, raw, index, bare)) for index, raw in enumerate(items)]


def _decoded(path: str, raw: msgspec.Raw, index: int, bare: bool) -> _Cve:
    try:
        return _CVE.decode(raw) if bare else _ITEM.decode(raw).cve
    except msgspec.ValidationError as exc:
        where = () if bare else ("cve",)
        raise ImportRefused(path, _name(raw, index, bare), reason(exc, raw, WORDS, where)) from None
    except msgspec.DecodeError as exc:  # invalid UTF-8 in a string: the file-wide decode skips strings
        raise ImportRefused(path, _name(raw, index, bare), f"not JSON: {exc}") from None


def _items(path: str, data: bytes) -> tuple[tuple[msgspec.Raw, ...], bool]:
    """The file's records as raw JSON, and whether they are bare cve objects (else {"cve": ...})."""
    try:
        top = msgspec.json.decode(data, type=dict[str, msgspec.Raw])
    except msgspec.ValidationError:  # a DecodeError too: first
        raise ImportRefused(path, None, "expected a JSON object (an NVD feed or CVE record)") from None
    except msgspec.DecodeError as exc:
        raise ImportRefused(path, None, f"not JSON: {exc}") from None
    if "vulnerabilities" in top:
        try:
            return _RAWS.decode(top["vulnerabilities"]), False
        except msgspec.ValidationError as exc:
            raise ImportRefused(path, None, reason(exc, top["vulnerabilities"], WORDS, at="vulnerabilities")) from None
    if "cve" in top:
        return (msgspec.Raw(data),), False
    if "id" in top:
        return (msgspec.Raw(data),), True
    raise ImportRefused(path, None, 'neither an NVD feed ("vulnerabilities") nor a CVE record ("cve")')


def _name(raw: msgspec.Raw, index: int, bare: bool) -> str:
    """The record's CVE id if it has a readable one, else its place in the feed."""
    try:
        found = msgspec.json.decode(raw, type=_Id if bare else _ItemId)
    except msgspec.DecodeError:  # a ValidationError too
        return f"vulnerabilities[{index}]"
    cve_id = found.id if isinstance(found, _Id) else found.cve.id
    return named(cve_id) if isinstance(cve_id, str) and cve_id else f"vulnerabilities[{index}]"


def _record(cve: _Cve) -> CveRecord:
    score, version, severity = _cvss(cve.metrics)
    return CveRecord(
        id=cve.id, published=_when(cve.published), modified=_when(cve.last_modified),
        status=cve.vuln_status, summary=_english(cve.descriptions),
        cvss=score, cvss_version=version, severity=severity,
        configurations=tuple(_configuration(c) for c in cve.configurations))


def _when(moment: datetime) -> str:
    """As NVD writes it (milliseconds, no zone: NVD's times are UTC); a time with a zone is
    turned to UTC first, so stored times compare as text (the newest record, a newer copy)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds")


def _english(descriptions: tuple[_Description, ...]) -> str:
    texts = [d.value for d in descriptions if d.lang == "en"] or [d.value for d in descriptions]
    return texts[0] if texts else ""


def _cvss(metrics: _Metrics) -> tuple[float | None, str | None, Severity | None]:
    """The newest CVSS version scored (v4.0, v3.1, v3.0, v2: older records have only the older
    ones): the NVD's own (Primary) score if any, else the first."""
    versions: tuple[tuple[str, tuple[_Metric, ...] | tuple[_V2Metric, ...]], ...] = (
        ("4.0", metrics.cvss_metric_v40), ("3.1", metrics.cvss_metric_v31),
        ("3.0", metrics.cvss_metric_v30), ("2.0", metrics.cvss_metric_v2))
    for version, scored in versions:
        if scored:
            score, level = next((m for m in scored if m.type == "Primary"), scored[0]).scored
            severity: Severity = level.lower()  # type: ignore[assignment]
            return score, version, severity
    return None, None, None


def _configuration(c: _Configuration) -> Configuration:
    return Configuration(operator=c.operator, negate=c.negate, nodes=tuple(
        Node(operator=n.operator, negate=n.negate, matches=tuple(_match(m) for m in n.cpe_match))
        for n in c.nodes))


def _match(m: _CpeMatch) -> CpeMatch:
    return CpeMatch(criteria=m.criteria, vulnerable=m.vulnerable,
                    start_including=m.version_start_including, start_excluding=m.version_start_excluding,
                    end_including=m.version_end_including, end_excluding=m.version_end_excluding)
