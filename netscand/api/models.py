"""Every body and query the API reads or writes, as msgspec Structs: the one statement of their
shapes, from which requests are validated (api/validate.py) and the OpenAPI schemas are made
(api/openapi.py). Each field's prose and examples sit beside it.

Structs are closed (`forbid_unknown_fields`): a request with an unknown field is refused, and a
response schema says `additionalProperties: false`, so a field the code sends but no model
declares fails the tests' check of every response. A field that is absent unless it applies is
`UNSET` by default, which keeps it out of `required` without making it nullable.

Responses are still built as dicts and serialized by orjson (api/responses.py); the response
models describe them, and the tests hold the two together.
"""

# No `from __future__ import annotations`: the annotations are the models, built when the
# classes are (with the registries' values), not strings msgspec would evaluate later.
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType, field

from netscand.api.problems import NOT_READY
from netscand.scan.cves import FINDING_STATUSES, SEVERITIES
from netscand.scan.formats import DEVICE_FORMATS, FORMATS
from netscand.scan.identify import NAME_PREFERENCE
from netscand.scan.ports import SOURCE_PORTS
from netscand.scan.profiles import (
    DEFAULT_LEVEL,
    DEFAULT_PROFILE,
    GAP_FIELD,
    HOST_GAP_MS,
    JITTER_MS,
    LEVEL_NAMES,
    PACED_FIELDS,
    PACED_SILENT_PORTS,
    PROFILE_NAMES,
    PROFILE_ONLY_FIELDS,
    PROFILES,
    REQUEST,
    RETRIES,
    TIMEOUT_MS,
    accepting,
    pacing_profiles,
    requiring,
)
from netscand.scan.schedules import DELIVERIES, MISSED_POLICIES, RUN_OUTCOMES
from netscand.statuses import DELIVERY_STATUSES, STATUSES
from netscand.store.compare import KINDS as CHANGE_KINDS

MAX_CONCURRENT = (1, 65_536)
PER_PAGE = (1, 100)
PER_PAGE_DEFAULT = 25
# Devices per page of a result: the default holds an ordinary scan's whole result; the page is
# built in memory and sent in one piece, so the cap keeps it to a few megabytes.
RESULT_PER_PAGE = (1, 1000)
RESULT_PER_PAGE_DEFAULT = 1000
MAX_PAGE = 2**31 - 1  # keeps (page - 1) * per_page inside SQLite's 64-bit integers
IDEMPOTENCY_KEY_MAX = 255
# Slower than a probe a second a scan would hold a running slot for days (the fuzzer sent 5e-324).
MIN_RATE = 1.0

STATUS_NAMES = tuple(STATUSES)
PORT_STATES = ("open", "closed", "filtered", "open|filtered")  # the last: UDP's silence
# The values of each enum in the order they mean something in (a scan's life, the profiles'
# size): msgspec writes a Literal's values sorted, and in_order() puts them back in this order.
RESULT_FORMATS = ("json", *FORMATS)
DEVICE_LIST_FORMATS = ("json", *DEVICE_FORMATS)
ENUM_ORDERS = (PROFILE_NAMES, STATUS_NAMES, NAME_PREFERENCE, PORT_STATES, SEVERITIES, FINDING_STATUSES, LEVEL_NAMES,
               RESULT_FORMATS, DEVICE_LIST_FORMATS)
if TYPE_CHECKING:
    ProfileName = str
    LevelName = str
    StatusName = str
    HostnameSource = str
    NotReadyType = str
    PortState = str
    Severity = str
    FindingStatus = str
    ResultFormat = str
    DeviceFormat = str
else:
    # Built from the registries, so a new profile or status is one entry there.
    ProfileName = Literal[PROFILE_NAMES]
    LevelName = Literal[LEVEL_NAMES]
    StatusName = Literal[STATUS_NAMES]
    HostnameSource = Literal[NAME_PREFERENCE]
    NotReadyType = Literal[NOT_READY]
    PortState = Literal[PORT_STATES]
    Severity = Literal[SEVERITIES]
    FindingStatus = Literal[FINDING_STATUSES]
    ResultFormat = Literal[RESULT_FORMATS]
    DeviceFormat = Literal[DEVICE_LIST_FORMATS]

_SITE = "123e4567-e89b-12d3-a456-426614174000"
# A pattern's end: msgspec searches with Python's re, where `$` also matches before a final
# newline; the lookahead refuses that newline (and reads the same in JSON Schema's dialect).
_END = "$(?!\\n)"
Uuid = Annotated[str, Meta(
    min_length=36, max_length=36, examples=[_SITE], extra_json_schema={"format": "uuid"},
    pattern="^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}" + _END)]
Time = Annotated[str, Meta(
    min_length=20, max_length=20, pattern="^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z" + _END,
    examples=["2026-03-15T09:30:00Z"], extra_json_schema={"format": "date-time"})]
Count = Annotated[int, Meta(ge=0)]
Page = Annotated[int, Meta(ge=1, le=MAX_PAGE)]
PortNumber = Annotated[int, Meta(ge=1, le=65535)]
IdempotencyKey = Annotated[str, Meta(
    min_length=1, max_length=IDEMPOTENCY_KEY_MAX, pattern="^[\\x21-\\x7e]+" + _END, examples=[_SITE],
    description=f"Visible ASCII, at most {IDEMPOTENCY_KEY_MAX} characters; e.g. a UUID per logical start.")]

_TargetItem = Annotated[str, Meta(min_length=1, pattern="\\S")]
Target = Annotated[_TargetItem | Annotated[list[_TargetItem], Meta(min_length=1)], Meta(
    description="An IPv4 address, a CIDR block, a range `a.b.c.d-e.f.g.h` or a hostname (resolved "
                "once, at start), or a list of these. IPv6 gets 422 until supported.",
    examples=["198.18.0.0/24", ["198.18.0.1", "198.18.1.10-198.18.1.20", "printer.lan"]])]
# The shape of a port range; port_ranges (scan/ports.py) reads it and checks its bounds and order.
_PortRange = Annotated[str, Meta(pattern="^\\s*([0-9]+\\s*(-\\s*[0-9]+\\s*)?|-\\s*)" + _END)]
# The shape of a source port range "lo-hi"; ports.source_port_range checks its bounds.
_SourcePorts = Annotated[str, Meta(pattern="^[0-9]{1,10}-[0-9]{1,10}" + _END, examples=["32768-60999"])]


def in_order(node: Any) -> Any:
    """A JSON Schema with each enum of the registries' values in their order, not msgspec's sorted one."""
    if isinstance(node, list):
        return [in_order(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: in_order(value) for key, value in node.items()}
    values = _as_set(out.get("enum", ()))
    for order in ENUM_ORDERS:
        if values == _as_set(order):
            out["enum"] = list(order)
    return out


def _as_set(values: Any) -> set[tuple[type, Any]]:
    # By type as well: a Literal may mix them (1 and True are equal, and don't sort with "a").
    return {(type(value), value) for value in values}


class Closed(Struct, forbid_unknown_fields=True):
    """A JSON object with exactly the fields declared."""


def _profile_prose() -> str:
    return " ".join(f"{name}: {profile.description}" for name, profile in PROFILES.items())


# What order the probes go in, which the profiles' prose leaves to this (engine/plan.py).
_ORDER = ("Order: a steady (unpaced) profile's plan lists (port, host) pairs port by port and cuts "
          "them into shards of up to 65,536 probes; the shards go in a keyed random order and each "
          "shard's probes in a keyed random order of their own, so probes are shuffled only inside "
          "a shard (a shard holds a few ports of every host of the plan, not a random sample of the "
          "scan). A per-host paced scan sends each host's ports in a keyed random order of that "
          "host's, the hosts interleaved from keyed random starts, each send jittered.")


def _only_with(field: str) -> str:
    takers, needing = " or ".join(accepting(field)), " or ".join(requiring(field))
    if needing == takers:
        return f"Only with (and required by) profile {takers}"
    return f"Only with profile {takers}" + (f" (required by {needing})" if needing else "")


def _profile_rules() -> list[dict[str, object]]:
    """What JSON Schema can say of the fields only some profiles take (validate.py checks the
    same in code): another profile refuses them, a profile needing one requires it, and the
    paced fields need host_gap_ms where it turns pacing on."""
    def profile_in(names: list[str]) -> dict[str, object]:
        return {"required": ["profile"], "properties": {"profile": {"enum": names}}}

    refused = [{"if": profile_in(list(accepting(f))), "else": {"properties": {f: {"type": "null"}}}}
               for f in PROFILE_ONLY_FIELDS]
    required = [{"if": profile_in([p.name]), "then": {
        "required": list(p.requires), "properties": {f: {"not": {"type": "null"}} for f in p.requires}}}
        for p in PROFILES.values() if p.requires]
    # Where the request decides pacing, the paced fields want the gap that turns it on.
    gap_given = {"required": [GAP_FIELD], "properties": {GAP_FIELD: {"not": {"type": "null"}}}}
    paced_on_request = [p.name for p in PROFILES.values() if p.pacing == REQUEST]
    unpaced = {"if": {"allOf": [profile_in(paced_on_request), {"not": gap_given}]},
               "then": {"properties": {f: {"type": "null"} for f in PACED_FIELDS}}}
    return [*refused, *required, unpaced]


# -- requests -------------------------------------------------------------------------------------

class StartRequest(Closed):
    """The body of POST /api/v1/scans/start. JSON null in an optional field means it is not given."""

    target: Target
    profile: Annotated[ProfileName | None, Meta(description=f"Default {DEFAULT_PROFILE}. {_profile_prose()} {_ORDER}",
                                                examples=[PROFILE_NAMES[0]])] = DEFAULT_PROFILE
    site_id: Annotated[Uuid | None, Meta(description="The site the scan belongs to; a filter of the list. "
                                         "Echoed in lower case.")] = None
    ports: Annotated[Annotated[list[PortNumber | _PortRange], Meta(min_length=1)] | None, Meta(
        description=f"{_only_with('ports')}: port numbers and inclusive ranges \"a-b\".",
        examples=[[22, 80, "8000-8100"]])] = None
    udp_ports: Annotated[Annotated[list[PortNumber | _PortRange], Meta(min_length=1)] | None, Meta(
        description=f"{_only_with('udp_ports')}: UDP ports to scan beside the TCP ones, written as "
                    "`ports` is and with its limits; absent, no UDP port scan.",
        examples=[[53, 123, 161, "5000-5010"]])] = None
    timeout_ms: Annotated[Annotated[int, Meta(ge=TIMEOUT_MS[0], le=TIMEOUT_MS[1])] | None, Meta(
        description="How long to wait for a reply to one probe before retrying or calling the port "
                    "filtered.")] = None
    max_concurrent: Annotated[Annotated[int, Meta(ge=MAX_CONCURRENT[0], le=MAX_CONCURRENT[1])] | None, Meta(
        description="How many hosts are scanned at once.")] = None
    enable_profiling: Annotated[bool | None, Meta(
        description=f"{_only_with('enable_profiling')}: device profiling of the hosts found (vendor, OS "
                    "guess, host names, service detection).")] = None
    enable_cve_match: Annotated[bool | None, Meta(
        description=f"{_only_with('enable_cve_match')}: match the services found against the "
                    "daemon's CVE data, as deep does: the result gets `cves`, `cve_counts` and "
                    "`cve_data`. It implies enable_profiling (service detection finds the CPEs "
                    "matched): with enable_profiling false it is refused (422).")] = None
    rate: Annotated[Annotated[float, Meta(ge=MIN_RATE)] | None, Meta(
        description="Probes per second, pinned: sent at this rate (at most engine.rate) whatever the path does; "
                    "above the policy's max_rate: 422. Absent: the engine's closed loop starts slow, climbs while "
                    "replies keep pace and backs off when the path loses probes, up to engine.rate.",
        examples=[500])] = None
    retries: Annotated[Annotated[int, Meta(ge=RETRIES[0], le=RETRIES[1])] | None, Meta(
        description="Retries of an unanswered probe.")] = None
    skip_discovery: Annotated[bool | None, Meta(
        description="Probe every target address instead of only those that answer host discovery "
                    "(ICMP echo, TCP SYN and ACK pings; ARP on the local link), like nmap's -Pn.")] = None
    stealth_level: Annotated[LevelName | None, Meta(
        description=f"{_only_with('stealth_level')}: its pace (default {DEFAULT_LEVEL}): the per-host "
                    "gap, jitter, rate cap and retries of the level (see the profile's description); "
                    f"{GAP_FIELD}, {PACED_FIELDS[0]}, rate and retries override each.",
        examples=[DEFAULT_LEVEL])] = None
    host_gap_ms: Annotated[Annotated[int, Meta(ge=HOST_GAP_MS[0], le=HOST_GAP_MS[1])] | None, Meta(
        description=f"{_only_with(GAP_FIELD)}: each host gets at most one probe per this many "
                    "milliseconds (plus jitter_ms), retries included; on "
                    f"{' or '.join(n for n in accepting(GAP_FIELD) if n not in pacing_profiles())} it "
                    "turns per-host pacing on. A gap above 3000 ms stays out of the window of threshold "
                    "detectors (scanlogd, xt_psd).", examples=[3500])] = None
    jitter_ms: Annotated[Annotated[int, Meta(ge=JITTER_MS[0], le=JITTER_MS[1])] | None, Meta(
        description=f"{_only_with('jitter_ms')}, with per-host pacing ({GAP_FIELD}, or profile "
                    f"{' or '.join(pacing_profiles())}): each per-host wait is the gap plus a random "
                    "0 to this many milliseconds.", examples=[1000])] = None
    source_ports: Annotated[_SourcePorts | None, Meta(
        description=f"{_only_with('source_ports')}, with per-host pacing: the range \"lo-hi\" "
                    f"(within {SOURCE_PORTS[0]}-{SOURCE_PORTS[1]}, two ports at least) the SYNs' "
                    "source ports are spread over (even ones, as Linux's connect() takes); default the "
                    "kernel's ip_local_port_range clipped to that.")] = None


START_REQUEST_RULES = {"allOf": _profile_rules()}


class ListQuery(Closed):
    """The query of GET /api/v1/scans."""

    page: Page = 1
    per_page: Annotated[int, Meta(ge=PER_PAGE[0], le=PER_PAGE[1])] = PER_PAGE_DEFAULT
    status: Annotated[StatusName | UnsetType, Meta(description="Only scans in this status.")] = UNSET
    site_id: Annotated[Uuid | UnsetType, Meta(description="Only scans of this site.")] = UNSET


class ResultQuery(Closed):
    """The query of GET /api/v1/scans/{scan_id}/result."""

    page: Page = 1
    per_page: Annotated[int, Meta(ge=RESULT_PER_PAGE[0], le=RESULT_PER_PAGE[1])] = RESULT_PER_PAGE_DEFAULT
    format: Annotated[ResultFormat, Meta(
        description="json: one page of the result document. nmap-xml (nmap's XML output, valid against "
                    "nmap's DTD), csv (one port per line) and jsonl (JSON Lines, one device per line): "
                    "the whole result, streamed, which page and per_page do not take (422).")] = "json"


# -- scans ---------------------------------------------------------------------------------------

Status = Annotated[StatusName, Meta(
    description="queued: waiting to start; running: actively scanning; completed: finished "
                "successfully; failed: an error occurred (see `error`); cancelled: stopped by a user, "
                "or by the daemon shutting down (a queued or paced scan: the others stay running "
                "and resume at its next start).")]


class ScanStatus(Closed):
    """A scan and where it stands: the body of GET /api/v1/scans/{scan_id}."""

    id: Uuid
    status: Status
    target: Annotated[Target, Meta(description="As given at start.")]
    profile: ProfileName
    site_id: Uuid | None
    progress_percent: Annotated[int, Meta(ge=0, le=100, description="Probes done over probes planned.")]
    hosts_found: Annotated[Count, Meta(description="Hosts seen up.")]
    ports_found: Annotated[Count, Meta(description="Open ports.")]
    created_at: Annotated[Time, Meta(description="When the scan was accepted.")]
    started_at: Annotated[Time | None, Meta(description="Null while queued.")]
    estimated_completion: Annotated[Time | None, Meta(description="Null until it can be estimated.")]
    finished_at: Time | None
    error: Annotated[str | None, Meta(description="Why the scan failed; null unless failed.")]
    excluded_addresses: Annotated[Count, Meta(
        description="Target addresses skipped because the policy's excluded_targets holds them.")]


class ScanList(Closed):
    """One page of scans, newest first: the body of GET /api/v1/scans."""

    scans: Annotated[list[ScanStatus], Meta(description="Newest first.")]
    page: Page
    per_page: Annotated[int, Meta(ge=PER_PAGE[0], le=PER_PAGE[1])]
    total: Annotated[Count, Meta(description="Scans matching the filters, on all pages.")]


# -- results -------------------------------------------------------------------------------------

class Cve(Closed):
    """A CVE matched to a port's product and version (a finding), from the daemon's CVE data."""

    id: Annotated[str, Meta(pattern="^CVE-[0-9]{4}-[0-9]+" + _END, examples=["CVE-2024-6387"])]
    status: Annotated[FindingStatus, Meta(
        description="vulnerable: the version is in a vulnerable range. fixed_by_distribution: it is, "
                    "but the banner names a distribution build (OpenSSH's `Debian-2+deb12u3`, "
                    "MariaDB's `-0+deb12u1`) that the distribution's security tracker says fixed it; "
                    "see fixed_version. needs_platform: vulnerable only on a platform (an AND "
                    "configuration with an OS node) that the device's OS guess does not confirm.")]
    cvss: Annotated[Annotated[float, Meta(ge=0, le=10)] | None, Meta(
        description="NVD's CVSS v4.0 base score, else v3.1; null when it has neither.")]
    severity: Annotated[Severity | None, Meta(description="The score's severity; null without a score.")]
    summary: Annotated[str, Meta(description="NVD's English description.")]
    published: Annotated[str, Meta(description="When NVD published it, as NVD writes it.",
                                   examples=["2024-07-01T13:15:10.123"])]
    evidence: Annotated[str, Meta(
        description="The criterion that matched: its CPE, with the version range.",
        examples=["cpe:2.3:a:openbsd:openssh:*:*:*:*:*:*:*:* < 9.8p1"])]
    fixed_version: Annotated[str | UnsetType, Meta(
        description="fixed_by_distribution only: the distribution's build that fixed it.",
        examples=["1:9.2p1-2+deb12u3"])] = UNSET


class CveCounts(Closed):
    """"vulnerable" findings by severity (a finding without a score is counted under no key)."""

    critical: Count
    high: Count
    medium: Count
    low: Count
    none: Count


class SourceStatus(Closed):
    """One source of the CVE data."""

    name: Annotated[str, Meta(description="nvd: NVD CVE JSON 2.0; debian-tracker: the Debian Security "
                                          "Tracker's JSON.", examples=["nvd"])]
    records: Annotated[Count, Meta(description="CVE records (nvd) or tracker entries held.")]
    newest: Annotated[str | None, Meta(description="nvd: the newest record's lastModified, as NVD "
                                                   "writes it; debian-tracker: when it was imported.")]
    imported_at: Annotated[Time | None, Meta(description="When this source was last imported.")]


class CveStatus(Closed):
    """The CVE data scans are matched against: the body of GET /api/v1/cve/status."""

    loaded: Annotated[bool, Meta(description="Whether any NVD record is loaded; without, no CVE is "
                                             "matched.")]
    sources: list[SourceStatus]
    updated_at: Annotated[Time | None, Meta(description="The latest import of any source.")]
    age_seconds: Annotated[Annotated[float, Meta(ge=0)] | None, Meta(description="Since updated_at.")]


class CveData(Closed):
    """The CVE data a scan was matched against (when it was, or last re-matched)."""

    loaded: Annotated[bool, Meta(description="false: no CVE data was loaded (or it could not be read), "
                                             "so nothing was matched; `note` says what to do.")]
    sources: Annotated[list[SourceStatus] | UnsetType, Meta(description="With loaded data.")] = UNSET
    updated_at: Annotated[Time | None | UnsetType, Meta(description="With loaded data: its latest "
                                                                     "import.")] = UNSET
    note: Annotated[str | UnsetType, Meta(
        description="Without loaded data: why, and how to load it.",
        examples=["no CVE data is loaded: run `netscand cve sync` or `netscand cve import`"])] = UNSET


def _detail(description: str) -> Meta:
    return Meta(description=description + " Absent when not known.")


class Port(Closed):
    """A port of a device and what answers on it."""

    port: PortNumber
    protocol: Annotated[Literal["tcp", "udp"], Meta(
        description="tcp: a port the TCP SYN scan found. udp: a port the UDP port scan found "
                    f"(profile {' or '.join(p.name for p in PROFILES.values() if p.udp)}), or a UDP "
                    "service that answered one of profiling's queries (mDNS 5353, NetBIOS 137, SNMP "
                    "161), which is open whatever the scan heard; one entry per port either way.")]
    state: Annotated[PortState, Meta(
        description="open: it answered (TCP SYN-ACK; a UDP reply). closed: TCP RST; ICMP port "
                    "unreachable for UDP. filtered: no TCP answer, or an ICMP unreachable other than "
                    "the port's. open|filtered: UDP only, no answer after the retries: a service that "
                    "ignored the probe, a filter, or (see udp_icmp_limited) a closed port whose ICMP "
                    "answer the host's rate limit suppressed.")]
    service: Annotated[str | None, Meta(
        description="What answers: found by service detection, else the port's registered name; null "
                    "if neither.", examples=["SSH", "HTTPS"])]
    product: Annotated[str | UnsetType, _detail("The software, from service detection.")] = UNSET
    version: Annotated[str | UnsetType, _detail("Its version.")] = UNSET
    banner: Annotated[str | UnsetType, _detail("What the service said first, printable.")] = UNSET
    cpe: Annotated[str | UnsetType, _detail("CPE 2.3 name of the product.")] = UNSET
    cves: Annotated[list[Cve] | UnsetType, Meta(
        description="With CVE matching (deep; custom's enable_cve_match) and CVE data loaded, on a "
                    "port with a `cpe`: the CVEs of its product and version, most severe first. "
                    "Absent on other ports and scans.")] = UNSET
    cve_note: Annotated[str | UnsetType, Meta(
        description="Why the port's CVEs can't be matched (its version is unknown); with `cves`.",
        examples=["version unknown: no CVE can be matched"])] = UNSET


class Hostname(Closed):
    """A name the host goes by, and who told it."""

    name: str
    source: Annotated[HostnameSource, Meta(
        description="dns: the reverse lookup; mdns, netbios, snmp: the host's answer to that query.")]


class NotShown(Closed):
    """Ports in a state too common on this host to list, by state (like nmap's "Not shown: 995
    closed ports"); `open` only for a tarpit."""

    closed: Count | UnsetType = UNSET
    filtered: Count | UnsetType = UNSET
    open: Count | UnsetType = UNSET


class NotShownUdp(NotShown):
    """UDP ports in a state too common on this host to list, by state; `open` only for a host that
    answered (nearly) every UDP port probed."""

    open_filtered: Count | UnsetType = field(default=UNSET, name="open|filtered")


class HostKey(Closed):
    """An SSH server's host key, from a key exchange (no authentication) on an open port."""

    port: PortNumber
    type: Annotated[str, Meta(examples=["ssh-ed25519"])]
    fingerprint: Annotated[str, Meta(description="SHA-256, as `ssh-keygen -lf` prints it.",
                                     examples=["SHA256:V9/t7bx6MtdfDh+tVZIWG6xfPl5uq/vhHb2Hc2zI5dI"])]


class Certificate(Closed):
    """The leaf certificate a TLS port presented (not verified: it identifies, it is not trusted)."""

    port: PortNumber
    sha256: Annotated[str, Meta(pattern="^[0-9a-f]{64}" + _END, description="SHA-256 of its DER, lowercase hex.")]
    subject: Annotated[str, Meta(description="RFC 4514.", examples=["CN=www.example.net"])]
    issuer: Annotated[str, Meta(description="RFC 4514.")]
    not_after: Annotated[str, Meta(examples=["2027-03-15T00:00:00+00:00"])]


Share = Annotated[float, Meta(ge=0, le=1)]


class HostCoverage(Closed):
    """What a device's port scans sent it and heard back (docs/api.md, Coverage)."""

    probes: Annotated[Count, Meta(description="Probes sent to its ports, retries included. Where it "
                                  "answered nothing in a part of the scan, each of its ports there is "
                                  "counted as sent 1 + retries times.")]
    answered: Annotated[Count, Meta(description="Its ports that answered (open, closed or an ICMP error).")]
    recovered: Annotated[Count, Meta(description="Of those, the ones that answered only after a retry.")]
    confidence: Annotated[Share, Meta(
        description="That a port it left silent is really filtered (or open|filtered), not lost: "
                    "1 - loss^(1 + retries), with its own loss estimate shrunk towards the scan's; "
                    "a host that answered no port is given a loss of 0.5 at least.")]


class Coverage(Closed):
    """What a scan sent and heard back, and the loss that shows (docs/api.md, Coverage)."""

    probes_sent: Annotated[Count, Meta(description="Every probe, first attempts and retries.")]
    probes_answered: Annotated[Count, Meta(description="Probes that got any answer.")]
    probes_retried: Annotated[Count, Meta(description="Probes sent again for want of an answer.")]
    probes_recovered: Annotated[Count, Meta(
        description="Probes answered only after a retry: the direct evidence of loss.")]
    retries: Annotated[Count, Meta(description="Retries a probe was allowed (the most of the scan's plans).")]
    estimated_loss: Annotated[Share | None, Meta(
        description="Round-trip loss rate: the p whose share of answered probes that needed a retry, "
                    "(p - p^(R+1)) / (1 - p^(R+1)) with R retries, is the one seen. Null without "
                    "evidence: no answer, or no retries.")]


class Device(Closed):
    """A host found up, and what it runs."""

    ip: Annotated[str, Meta(extra_json_schema={"format": "ipv4"}, examples=["198.18.0.5"])]
    mac: Annotated[Annotated[str, Meta(pattern="^([0-9A-F]{2}:){5}[0-9A-F]{2}" + _END)] | None, Meta(
        description="On-link hosts only.", examples=["02:00:C6:12:00:05"])]
    hostname: Annotated[str | None, Meta(description="The best of `hostnames`: DNS first, then mDNS, "
                                         "NetBIOS, SNMP.")]
    vendor: Annotated[str | None, Meta(
        description="Organisation that registered the MAC's OUI (IEEE), or \"Randomized (locally "
                    "administered)\".")]
    os_guess: Annotated[str | None, Meta(
        description="From the TCP/IP fingerprint of the host's SYN-ACKs (initial TTL, window, option "
                    "order, IP ID) and service banners; null rather than a weak guess.")]
    ports: Annotated[list[Port], Meta(description="Sorted by number, then protocol.")]
    hostnames: Annotated[list[Hostname] | UnsetType, Meta(
        description="Every name found for the host, one per source; absent when none was.")] = UNSET
    os_confidence: Annotated[Annotated[float, Meta(ge=0, le=1)] | UnsetType, Meta(
        description="How firmly the evidence supports os_guess (only with it).")] = UNSET
    not_shown: Annotated[NotShown | UnsetType, Meta(description="TCP ports counted, not listed.")] = UNSET
    not_shown_udp: Annotated[NotShownUdp | UnsetType, Meta(description="UDP ports counted, not listed.")] = UNSET
    udp_icmp_limited: Annotated[Literal[True] | UnsetType, Meta(
        description="The host answered some UDP probes with ICMP port unreachable yet left more "
                    "ports silent after every retry than that. Hosts rate-limit those answers (Linux: about one a "
                    "second, icmp_ratelimit), so its open|filtered ports are most likely closed ports "
                    "whose answer was suppressed. Profiling scans (deep; custom with enable_profiling) "
                    "ask such a host's silent ports again at that pace, so after them what stays "
                    "open|filtered stayed silent when asked at the host's pace, and the flag remains "
                    "only where most ports did (or time ran out first). Absent otherwise.")] = UNSET
    tarpit: Annotated[Literal[True] | UnsetType, Meta(
        description="The host answered SYN-ACK on (nearly) every TCP port probed (a tarpit or a SYN "
                    "proxy): its TCP open ports are counted in not_shown, not listed, and it gets no "
                    "OS guess and no TCP service detection. A host answering (nearly) every UDP port "
                    "is not flagged: its UDP open ports are counted in not_shown_udp. Absent "
                    "otherwise.")] = UNSET
    timed_out: Annotated[Literal[True] | UnsetType, Meta(
        description="The host exceeded the profile's per-host time budget. Absent otherwise, and "
                    "always in a paced scan (stealth; custom with host_gap_ms), whose budget, in probes, "
                    f"stops probing a host that answered none of its {PACED_SILENT_PORTS} most frequently open ports "
                    "(no device) and leaves one that answers probed to its last port.")] = UNSET
    cve_counts: Annotated[CveCounts | UnsetType, Meta(
        description="Its ports' \"vulnerable\" findings by severity; only on a device with a port whose "
                    "CVEs were matched.")] = UNSET
    host_keys: Annotated[list[HostKey] | UnsetType, Meta(
        description="With service detection: the host key of each open port detected as SSH, by port. "
                    "Absent when none was had.")] = UNSET
    certificates: Annotated[list[Certificate] | UnsetType, Meta(
        description="With service detection: the certificate of each open port that spoke TLS, by port. "
                    "Absent when none was had.")] = UNSET
    coverage: Annotated[HostCoverage | UnsetType, Meta(
        description="Once the scan has swept: what its port scans sent the host and heard back. "
                    "Absent for a host no port scan probed.")] = UNSET


class ScanResult(Closed):
    """One page of what a scan found: the body of GET /api/v1/scans/{scan_id}/result."""

    id: Uuid
    status: Status
    target: Target
    profile: ProfileName
    site_id: Uuid | None
    started_at: Time | None
    finished_at: Time | None
    devices_found: Annotated[Count, Meta(description="Devices of the whole result, on all pages.")]
    open_ports_total: Annotated[Count, Meta(description="Open ports of the whole result, on all pages.")]
    duration_seconds: Annotated[Count, Meta(description="From start to finish (or to now).")]
    devices: Annotated[list[Device], Meta(description="This page's devices, sorted by IP over all pages.")]
    page: Page
    per_page: Annotated[int, Meta(ge=RESULT_PER_PAGE[0], le=RESULT_PER_PAGE[1])]
    cve_counts: Annotated[CveCounts | UnsetType, Meta(
        description="With CVE matching and data: every device's \"vulnerable\" findings by severity, "
                    "on all pages.")] = UNSET
    cve_data: Annotated[CveData | UnsetType, Meta(
        description="With CVE matching (deep; custom's enable_cve_match), once the scan has ended: "
                    "the CVE data it was matched against, or that none was loaded (the scan "
                    "completes all the same). Absent for other scans.")] = UNSET
    coverage: Annotated[Coverage | UnsetType, Meta(
        description="What the scan sent and heard back (so far, while it runs), and the loss that "
                    "shows. Kept with the scan when it ends; absent while a scan waits to start, and "
                    "for scans that ended under an older netscand.")] = UNSET


# -- errors and health ---------------------------------------------------------------------------

class Problem(Closed):
    """An RFC 9457 problem: every error the API answers."""

    type: Annotated[str, Meta(extra_json_schema={"format": "uri-reference"},
                              examples=["urn:netscand:problem:invalid-field"])]
    title: str
    status: Annotated[int, Meta(ge=400, le=599)]
    detail: str
    field: Annotated[str | UnsetType, Meta(description="The input at fault (422; 403 `target`).",
                                           examples=["timeout_ms"])] = UNSET


class Checks(Closed):
    """Each part's state: "ok", or why it is not ready."""

    store: Annotated[str, Meta(description="The database answers a read, and its file system is "
                                           "writable and has room.")]
    engine: Annotated[str, Meta(description="Every engine worker has started and its heartbeat is fresh.")]


class NotReady(Closed):
    """The 503 of /readyz: a problem with each part's state."""

    type: NotReadyType
    title: str
    status: Literal[503]
    detail: str
    checks: Checks


class Health(Closed):
    """The API answers."""

    status: Literal["ok"]


class Readiness(Closed):
    """The daemon can take and run scans now."""

    status: Literal["ready"]
    checks: Annotated[Checks, Meta(description="Every part \"ok\".")]


# Every schema of the document, by name.
SCHEMAS: tuple[type[Struct], ...] = (StartRequest, ScanStatus, ScanList, ScanResult, Device, Port, Cve, Hostname,
                                    NotShown, NotShownUdp, CveStatus, Problem, NotReady, Checks, Health, Readiness)


# -- webhooks (issue 13: api/webhooks.py) --------------------------------------------------------

WEBHOOK_PER_PAGE = (1, 100)
MAX_PATTERNS = 32
if TYPE_CHECKING:
    DeliveryStatus = str
else:
    DeliveryStatus = Literal[DELIVERY_STATUSES]
WebhookUrl = Annotated[str, Meta(
    min_length=8, max_length=2048, pattern="^https?://\\S+" + _END, examples=["http://198.18.0.20:8080/hooks"],
    description="http:// or https://, its host an IP address or a DNS name. Every address the host "
                "resolves to must be inside the config's webhooks.allowed_destinations (403 otherwise).")]
EventPattern = Annotated[str, Meta(
    pattern="^(\\*|(scan|host|port|change)\\.(\\*|[a-z_]+))" + _END, examples=["change.*"],
    description="An event type (scan.state, scan.progress, host.up, port.found, change.<kind>), a "
                "family of them (\"change.*\"), or \"*\" for every event.")]
EventPatterns = Annotated[list[EventPattern], Meta(min_length=1, max_length=MAX_PATTERNS,
                                             examples=[["change.*", "scan.state"]])]
Secret = Annotated[str, Meta(
    pattern="^whsec_[A-Za-z0-9+/]{32,88}={0,2}" + _END, examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    description="The Standard Webhooks signing secret: whsec_ and the base64 of 24 to 64 random bytes.")]
WebhookId = Annotated[str, Meta(min_length=36, max_length=36, examples=[_SITE], extra_json_schema={"format": "uuid"})]


class WebhookCreate(Closed):
    """The body of POST /api/v1/webhooks."""

    url: WebhookUrl
    events: Annotated[EventPatterns, Meta(description="The event types it is sent: an event matching any "
                                                "pattern is delivered.")]
    secret: Annotated[Secret | None, Meta(description="The signing secret; made by the daemon when "
                                                      "absent. Returned only by this request.")] = None


class WebhookUpdate(Closed):
    """The body of PATCH /api/v1/webhooks/{webhook_id}: the fields given change, the others stay."""

    url: WebhookUrl | None = None
    events: EventPatterns | None = None
    enabled: Annotated[bool | None, Meta(
        description="false: no event is queued or sent for it. Enabled again, it takes the events "
                    "from then on (not those while it was off) and sends its deliveries still pending.")] = None


class WebhookQuery(Closed):
    """The query of GET /api/v1/webhooks."""

    page: Page = 1
    per_page: Annotated[int, Meta(ge=WEBHOOK_PER_PAGE[0], le=WEBHOOK_PER_PAGE[1])] = PER_PAGE_DEFAULT


class DeliveryQuery(Closed):
    """The query of GET /api/v1/webhooks/{webhook_id}/deliveries."""

    page: Page = 1
    per_page: Annotated[int, Meta(ge=WEBHOOK_PER_PAGE[0], le=WEBHOOK_PER_PAGE[1])] = PER_PAGE_DEFAULT
    status: Annotated[DeliveryStatus | UnsetType, Meta(description="Only deliveries in this status.")] = UNSET


class Webhook(Closed):
    """A webhook, without its secret: the body of GET /api/v1/webhooks/{webhook_id}."""

    id: WebhookId
    url: WebhookUrl
    events: EventPatterns
    enabled: bool
    created_at: Time
    updated_at: Time


class WebhookCreated(Webhook):
    """A new webhook with its secret: the one answer that shows it."""

    secret: Secret


class WebhookList(Closed):
    """One page of webhooks, newest first: the body of GET /api/v1/webhooks."""

    webhooks: list[Webhook]
    page: Page
    per_page: Annotated[int, Meta(ge=WEBHOOK_PER_PAGE[0], le=WEBHOOK_PER_PAGE[1])]
    total: Count


class Delivery(Closed):
    """One event sent (or being sent) to a webhook, and how it went."""

    id: Annotated[str, Meta(pattern="^msg_[0-9a-f]{32}" + _END, description=(
        "The webhook-id header of every attempt: the same on each retry, so a receiver can "
        "drop a delivery it already had."))]
    event_seq: Annotated[int, Meta(ge=1, description="The event's seq (its SSE id).")]
    type: Annotated[str, Meta(examples=["change.port_opened"])]
    status: Annotated[DeliveryStatus, Meta(
        description="pending: not yet answered in 2xx, to be tried again at next_attempt_at; delivered: "
                    "answered in 2xx; failed: webhooks.max_attempts attempts went unanswered in 2xx.")]
    attempts: Count
    next_attempt_at: Annotated[Time | None, Meta(description="Pending only: when it is tried next.")]
    last_status_code: Annotated[Annotated[int, Meta(ge=100, le=599)] | None, Meta(
        description="The receiver's answer to the last attempt; null without an answer.")]
    last_error: Annotated[str | None, Meta(
        description="Why the last attempt did not deliver it (a status, a timeout, a refused "
                    "connection, a destination outside the allowlist); null if it did.")]
    created_at: Time
    last_attempt_at: Time | None
    delivered_at: Time | None


class DeliveryList(Closed):
    """One page of a webhook's delivery log, newest event first."""

    deliveries: list[Delivery]
    page: Page
    per_page: Annotated[int, Meta(ge=WEBHOOK_PER_PAGE[0], le=WEBHOOK_PER_PAGE[1])]
    total: Count


SCHEMAS += (WebhookCreate, WebhookUpdate, Webhook, WebhookCreated, WebhookList, Delivery, DeliveryList)


# -- live events (issue 13: api/events.py) -------------------------------------------------------

MAX_SEQ = 2**63 - 1  # SQLite's largest integer: a cursor past it is refused, not overflowed
Seq = Annotated[int, Meta(ge=0, le=MAX_SEQ)]
Ipv4 = Annotated[str, Meta(extra_json_schema={"format": "ipv4"}, examples=["198.18.0.5"])]


class EventsQuery(Closed):
    """The query of the event streams."""

    after: Annotated[Seq | UnsetType, Meta(description=(
        "Start after the event with this seq (0: from the oldest kept), for clients that can't "
        "send `Last-Event-ID`, which wins when both are given."))] = UNSET


class ScanStateData(Closed):
    """`scan.state`: a scan's new status."""

    id: Uuid
    status: Status
    error: Annotated[str | UnsetType, Meta(description="Why it failed, or why the daemon cancelled it; "
                                                       "absent otherwise.")] = UNSET


class ScanProgressData(Closed):
    """`scan.progress`: a running scan's progress, when its percentage or counts moved."""

    id: Uuid
    progress_percent: Annotated[int, Meta(ge=0, le=100)]
    hosts_found: Count
    ports_found: Count
    estimated_completion: Time | None


class HostUpData(Closed):
    """`host.up`: a host the scan found up, once per scan."""

    scan_id: Uuid
    ip: Ipv4
    mac: Annotated[Annotated[str, Meta(pattern="^([0-9A-F]{2}:){5}[0-9A-F]{2}" + _END)] | UnsetType,
                   Meta(description="On-link hosts only.")] = UNSET


class PortFoundData(Closed):
    """`port.found`: a port the scan found open, once per scan."""

    scan_id: Uuid
    ip: Ipv4
    port: PortNumber
    protocol: Literal["tcp", "udp"]
    service: Annotated[str | UnsetType, Meta(description="Its registered name or what service detection "
                                                         "found, if known yet.")] = UNSET


class _Event(Closed):
    seq: Annotated[int, Meta(ge=1, description="Its place in the daemon's events: the SSE `id`.")]
    scan_id: Annotated[Uuid | None, Meta(description="The scan it tells of.")]
    site_id: Annotated[Uuid | None, Meta(description="That scan's site, if it has one.")]
    at: Annotated[Time, Meta(description="When it was recorded.")]


class ScanStateEvent(_Event):
    """A `scan.state` event, as the JSON of its SSE `data` field."""

    type: Literal["scan.state"]
    data: ScanStateData


class ScanProgressEvent(_Event):
    """A `scan.progress` event, as the JSON of its SSE `data` field."""

    type: Literal["scan.progress"]
    data: ScanProgressData


class HostUpEvent(_Event):
    """A `host.up` event, as the JSON of its SSE `data` field."""

    type: Literal["host.up"]
    data: HostUpData


class PortFoundEvent(_Event):
    """A `port.found` event, as the JSON of its SSE `data` field."""

    type: Literal["port.found"]
    data: PortFoundData


class ChangeEvent(_Event):
    """A `change.<kind>` event, as the JSON of its SSE `data` field: written when a completed scan is merged into the
    inventory (before its `scan.state` completed)."""

    type: Annotated[str, Meta(pattern="^change\\.[a-z_]+" + _END, examples=["change.port_opened"])]
    data: Annotated[dict[str, Any], Meta(description="The change, as GET /api/v1/changes lists it.")]


EVENT_MODELS = (ScanStateEvent, ScanProgressEvent, HostUpEvent, PortFoundEvent, ChangeEvent)
SCHEMAS += EVENT_MODELS


# -- schedules (issue 13: api/schedules.py) ------------------------------------------------------

SCHEDULE_PER_PAGE = (1, 100)
ENUM_ORDERS += (MISSED_POLICIES, DELIVERIES, RUN_OUTCOMES)
if TYPE_CHECKING:
    MissedPolicy = str
    Delivery_ = str
    RunOutcome = str
else:
    MissedPolicy = Literal[MISSED_POLICIES]
    Delivery_ = Literal[DELIVERIES]
    RunOutcome = Literal[RUN_OUTCOMES]
Cron = Annotated[str, Meta(
    min_length=9, max_length=200, pattern="^[\\x20-\\x7e]+" + _END, examples=["0 2 * * *", "*/15 * * * *"],
    description="Five fields, minute hour day-of-month month day-of-week, in UTC, as croniter reads them "
                "(ranges, lists, steps, names of months and days, L and # for the last or nth weekday). "
                "One that never comes due (`0 0 31 2 *`) gets 422.")]


class ScheduleCreate(StartRequest, kw_only=True):
    """The body of POST /api/v1/schedules: the start request of its scans (every field of POST
    /api/v1/scans/start, checked as a start is, the target policy included, but nothing starts),
    then the schedule's own fields."""

    name: Annotated[str, Meta(min_length=1, max_length=200, examples=["nightly lab sweep"])]
    cron: Cron
    missed: Annotated[MissedPolicy, Meta(
        description="What becomes of the due times missed while the daemon was down (a due time more "
                    "than 60 s late): run_once: one scan starts as the daemon is back, for all of them; "
                    "skip: none does. Either way one run records them, with how many.")] = MISSED_POLICIES[0]
    deliver: Annotated[Delivery_, Meta(
        description="all: its scans' webhooks get every event of them. changes: only their change "
                    "events (change.*) and their end (scan.state), not progress, hosts and ports.")] = DELIVERIES[0]
    enabled: Annotated[bool, Meta(description="false: nothing is started until it is enabled again; the due "
                                              "times meanwhile are not missed, they never came.")] = True


def _patch_of(model: type[Struct], name: str, doc: str) -> type[Struct]:
    """`model` with every field optional: a merge patch of it (RFC 7396)."""
    fields = [(f.name, f.type | UnsetType, UNSET) for f in msgspec.structs.fields(model)]
    patch = msgspec.defstruct(name, fields, bases=(Closed,), module=__name__)
    patch.__doc__ = doc
    return patch


SchedulePatch = _patch_of(ScheduleCreate, "SchedulePatch", (
    "The body of PATCH /api/v1/schedules/{schedule_id}: a JSON merge patch (RFC 7396) of the "
    "schedule's fields as POST takes them. The fields given replace the schedule's, null removes an "
    "optional one (back to its default); the whole is then checked as a new schedule is."))


class ScheduleRun(Closed):
    """What one of a schedule's due times became."""

    due_at: Annotated[Time, Meta(description="The due time (the latest, for missed ones).")]
    outcome: Annotated[RunOutcome, Meta(
        description="started: its scan started on time. run_missed: due times were missed while the "
                    "daemon was down and, with missed run_once, one scan started for them. skipped_missed: "
                    "they were, and with missed skip none did. refused: the start was refused (the target "
                    "policy, a full queue, a deleted site); `detail` says why.")]
    scan_id: Annotated[Uuid | None, Meta(description="The scan started; null if none was.")]
    missed: Annotated[Count, Meta(description="How many due times were missed (up to 100, then \"100 or "
                                              "more\" in `detail`); 0 for a due time on time.")]
    detail: Annotated[str | None, Meta(description="The missed due times' span, or why the start was refused.")]
    at: Annotated[Time, Meta(description="When the daemon handled it.")]


class Schedule(ScheduleCreate, kw_only=True):
    """A schedule: its start request (every field, null where not given), its own fields, and when
    it is due. The body of GET /api/v1/schedules/{schedule_id}."""

    id: Uuid
    created_at: Time
    updated_at: Time
    next_due: Annotated[Time | None, Meta(description="When its next scan starts; null while disabled.")]
    last_due: Annotated[Time | None, Meta(description="The latest due time handled (its latest run's).")]
    runs: Annotated[list[ScheduleRun] | UnsetType, Meta(
        description="Its latest runs, newest first (up to 20; the latest 1000 are kept). Not in lists.")] = UNSET


class ScheduleQuery(Closed):
    """The query of GET /api/v1/schedules."""

    page: Page = 1
    per_page: Annotated[int, Meta(ge=SCHEDULE_PER_PAGE[0], le=SCHEDULE_PER_PAGE[1])] = PER_PAGE_DEFAULT


class ScheduleList(Closed):
    """One page of schedules, newest first: the body of GET /api/v1/schedules."""

    schedules: Annotated[list[Schedule], Meta(description="Every schedule, or a `scan` token's own.")]
    page: Page
    per_page: Annotated[int, Meta(ge=SCHEDULE_PER_PAGE[0], le=SCHEDULE_PER_PAGE[1])]
    total: Count


SCHEMAS += (ScheduleCreate, SchedulePatch, Schedule, ScheduleRun, ScheduleList)


# -- sites and devices (issue 13: api/sites.py, api/devices.py) ----------------------------------

SITE_NAME_MAX = 100
SITE_PER_PAGE = (1, 100)
MIN_SEVERITIES = ("low", "medium", "high", "critical")
ENUM_ORDERS += (MIN_SEVERITIES,)
if TYPE_CHECKING:
    MinSeverity = str
else:
    MinSeverity = Literal[MIN_SEVERITIES]
_VISIBLE = "[^\\s\\x00-\\x1f\\x7f-\\x9f]"  # what a name starts and ends with
SiteName = Annotated[str, Meta(
    min_length=1, max_length=SITE_NAME_MAX, pattern=f"^{_VISIBLE}([^\\x00-\\x1f\\x7f-\\x9f]*{_VISIBLE})?" + _END,
    examples=["Head office"], description=f"1-{SITE_NAME_MAX} printable characters, not beginning or ending "
                                          "with a space; unique (409 if another site has it).")]
_Text = Annotated[str, Meta(min_length=1, max_length=100)]
DeviceId = Uuid


class SiteRequest(Closed):
    """The body of POST /api/v1/sites and of PATCH /api/v1/sites/{site_id} (a rename)."""

    name: SiteName


class Site(Closed):
    """A site: the body of GET /api/v1/sites/{site_id}."""

    id: Uuid
    name: SiteName
    created_at: Time
    updated_at: Annotated[Time, Meta(description="Its last rename (else its creation).")]


class SiteQuery(Closed):
    """The query of GET /api/v1/sites."""

    page: Page = 1
    per_page: Annotated[int, Meta(ge=SITE_PER_PAGE[0], le=SITE_PER_PAGE[1])] = PER_PAGE_DEFAULT


class SiteList(Closed):
    """One page of sites, by name: the body of GET /api/v1/sites."""

    sites: list[Site]
    page: Page
    per_page: Annotated[int, Meta(ge=SITE_PER_PAGE[0], le=SITE_PER_PAGE[1])]
    total: Annotated[Count, Meta(description="Sites on all pages.")]


class DeviceQuery(Closed):
    """The query of GET /api/v1/devices: every filter given must hold. Text matches ignore ASCII case."""

    page: Page = 1
    per_page: Annotated[int, Meta(ge=PER_PAGE[0], le=PER_PAGE[1])] = PER_PAGE_DEFAULT
    site_id: Annotated[Uuid | UnsetType, Meta(description="Only this site's devices.")] = UNSET
    address: Annotated[Annotated[str, Meta(max_length=43, examples=["198.18.0.0/24", "198.18.0.5"])] | UnsetType,
                       Meta(description="An address, or a CIDR block (without host bits): devices whose "
                                        "current address is in it.")] = UNSET
    q: Annotated[_Text | UnsetType, Meta(description="A part of the hostname or the vendor.",
                                         examples=["printer"])] = UNSET
    port: Annotated[Annotated[str, Meta(pattern="^[0-9]{1,5}(/(tcp|udp))?" + _END)] | UnsetType, Meta(
        description="An open port: its number, or number/protocol.", examples=["22", "161/udp"])] = UNSET
    service: Annotated[_Text | UnsetType, Meta(description="An open port's service, whole.",
                                               examples=["ssh"])] = UNSET
    product: Annotated[_Text | UnsetType, Meta(description="An open port's product, whole.",
                                               examples=["OpenSSH"])] = UNSET
    os: Annotated[_Text | UnsetType, Meta(description="A part of the OS guess.", examples=["Linux"])] = UNSET
    cve: Annotated[Annotated[str, Meta(pattern="^[Cc][Vv][Ee]-[0-9]{4}-[0-9]{4,19}" + _END)] | UnsetType, Meta(
        description="Devices with this CVE.", examples=["CVE-2024-6387"])] = UNSET
    min_severity: Annotated[MinSeverity | UnsetType, Meta(
        description="Devices with a CVE of this severity or worse.")] = UNSET
    seen_since: Annotated[Time | UnsetType, Meta(description="Last seen at or after this time.")] = UNSET
    not_seen_since: Annotated[Time | UnsetType, Meta(description="Last seen before this time.")] = UNSET
    present: Annotated[Literal["true", "false"] | UnsetType, Meta(
        description="true: found by the last completed scan that covered its address; false: not.")] = UNSET
    format: Annotated[DeviceFormat, Meta(
        description="json: one page of devices. csv (one open port per line) and jsonl (JSON Lines, one device "
                    "per line as the list has it): every device matching, streamed, which page and per_page "
                    "do not take (422).")] = "json"


class DevicePort(Closed):
    """An open port of a device, as the last scan that found it saw it."""

    port: PortNumber
    protocol: Literal["tcp", "udp"]
    service: str | UnsetType = UNSET
    product: str | UnsetType = UNSET
    version: str | UnsetType = UNSET


class InventoryDevice(Closed):
    """A device of the inventory: one per site, merged from every completed scan of it."""

    id: DeviceId
    site_id: Annotated[Uuid | None, Meta(description="Null: found by scans of no site.")]
    identity: Annotated[str, Meta(
        description="How it is recognised from scan to scan: mac:, tls:, ssh:, name: or ip: and the "
                    "evidence (a randomized MAC is not trusted alone).", examples=["mac:00:1B:21:3A:4F:10"])]
    ip: Annotated[str, Meta(description="Its current address.", examples=["198.18.0.5"])]
    mac: str | None
    mac_randomized: Annotated[bool, Meta(description="Its MAC is locally administered (randomized).")]
    hostname: str | None
    vendor: str | None
    os: str | None
    present: Annotated[bool, Meta(description="Found by the last completed scan that covered its address.")]
    max_severity: Annotated[MinSeverity | None, Meta(description="Its worst CVE's severity; null: none.")]
    first_seen: Time
    last_seen: Time
    last_scan_id: Annotated[Uuid | None, Meta(description="The last scan that found it.")]
    ports: Annotated[list[DevicePort], Meta(description="Open now, by number then protocol.")]


class DeviceList(Closed):
    """One page of devices, by site then address: the body of GET /api/v1/devices."""

    devices: list[InventoryDevice]
    page: Page
    per_page: Annotated[int, Meta(ge=PER_PAGE[0], le=PER_PAGE[1])]
    total: Annotated[Count, Meta(description="Devices matching the filters, on all pages.")]


class DeviceCve(Closed):
    """A CVE matched to one of the device's open ports."""

    id: Annotated[str, Meta(examples=["CVE-2024-6387"])]
    severity: MinSeverity | None
    port: PortNumber | None
    protocol: Literal["tcp", "udp"] | None


class DeviceAddress(Closed):
    """An address the device has had."""

    ip: str
    first_seen: Time
    last_seen: Time


class DeviceRecord(InventoryDevice):
    """A device with its history: the body of GET /api/v1/devices/{device_id}."""

    cves: Annotated[list[DeviceCve], Meta(description="Worst first.")]
    addresses: Annotated[list[DeviceAddress], Meta(description="Every address it has had, latest first.")]
    # "Change": defined below, in the changes' section (which takes DeviceId from here)
    changes: Annotated[list["Change"], Meta(description="Its changes, newest first: at most 100.")]
    more_changes: Annotated[bool, Meta(description="It has older changes than these; GET /api/v1/changes "
                                                   "lists them all.")]


SCHEMAS += (SiteRequest, Site, SiteList, DeviceList, InventoryDevice, DevicePort, DeviceRecord, DeviceCve,
            DeviceAddress)


# -- changes (issue 13: api/changes.py) -----------------------------------------------------------

CHANGES_PER_PAGE = (1, 1000)
CHANGES_PER_PAGE_DEFAULT = 100
ENUM_ORDERS += (CHANGE_KINDS,)
if TYPE_CHECKING:
    ChangeKind = str
else:
    ChangeKind = Literal[CHANGE_KINDS]
_ChangesPerPage = Annotated[int, Meta(ge=CHANGES_PER_PAGE[0], le=CHANGES_PER_PAGE[1])]
_ChangeValue = Annotated[str | None, Meta(
    description="device_appeared, device_gone, address_changed: an address; port_opened, port_closed: "
                "\"open\" (the other side null); service, product, version and os_changed: the value; "
                "cve_found, cve_fixed: the CVE id (the other side null).")]


class ChangeCve(Closed):
    """The CVE of a cve_found or cve_fixed change."""

    id: Annotated[str, Meta(examples=["CVE-2024-6387"])]
    severity: Annotated[Severity | None, Meta(description="Its score's severity; null without a score.")]


class Difference(Closed, kw_only=True):
    """A change between two scans' results (GET /api/v1/scans/{scan_id}/diff)."""

    ip: Annotated[Ipv4, Meta(description="The device's address (after the change; a gone device's last).")]
    kind: ChangeKind
    port: PortNumber | UnsetType = UNSET
    protocol: Literal["tcp", "udp"] | UnsetType = UNSET
    before: _ChangeValue
    after: _ChangeValue
    cve: Annotated[ChangeCve | UnsetType, Meta(description="cve_found and cve_fixed only.")] = UNSET


class Change(Closed, kw_only=True):
    """A change a completed scan made to the inventory: an item of GET /api/v1/changes, and the data
    of its `change.<kind>` event."""

    id: Annotated[int, Meta(ge=1, description="Its place among all changes, oldest first.")]
    scan_id: Annotated[Uuid, Meta(description="The scan that found it.")]
    site_id: Annotated[Uuid | None, Meta(description="The scan's site; null: no site.")]
    device_id: Annotated[DeviceId, Meta(description="The inventory's device (GET /api/v1/devices/{device_id}).")]
    ip: Annotated[Ipv4, Meta(description="The device's address (after the change; a gone device's last).")]
    kind: ChangeKind
    port: PortNumber | UnsetType = UNSET
    protocol: Literal["tcp", "udp"] | UnsetType = UNSET
    before: _ChangeValue
    after: _ChangeValue
    at: Annotated[Time, Meta(description="When the scan was merged into the inventory.")]
    cve: Annotated[ChangeCve | UnsetType, Meta(description="cve_found and cve_fixed only.")] = UNSET


class ChangesQuery(Closed):
    """The query of GET /api/v1/changes."""

    site_id: Annotated[Uuid | UnsetType, Meta(description="Only this site's changes.")] = UNSET
    since: Annotated[Time | UnsetType, Meta(description="Only changes at or after this time.")] = UNSET
    page: Page = 1
    per_page: _ChangesPerPage = CHANGES_PER_PAGE_DEFAULT


class ScanChangesQuery(Closed):
    """The query of GET /api/v1/scans/{scan_id}/changes."""

    page: Page = 1
    per_page: _ChangesPerPage = CHANGES_PER_PAGE_DEFAULT


class DiffQuery(Closed):
    """The query of GET /api/v1/scans/{scan_id}/diff."""

    # Required, but declared optional: a query model's fields are checked one at a time (validate._query).
    against: Annotated[Uuid | UnsetType, Meta(description="Required: the earlier scan; the changes go from it "
                                                          "to this one.")] = UNSET
    page: Page = 1
    per_page: _ChangesPerPage = CHANGES_PER_PAGE_DEFAULT


class ChangeList(Closed):
    """One page of changes, oldest first."""

    changes: list[Change]
    page: Page
    per_page: _ChangesPerPage
    total: Annotated[Count, Meta(description="Changes matching, on all pages.")]


class Diff(Closed):
    """One page of the changes from scan `against` to scan `scan_id`, by address."""

    scan_id: Uuid
    against: Uuid
    changes: list[Difference]
    page: Page
    per_page: _ChangesPerPage
    total: Annotated[Count, Meta(description="Changes on all pages.")]


SCHEMAS += (Change, ChangeCve, ChangeList, Difference, Diff)
