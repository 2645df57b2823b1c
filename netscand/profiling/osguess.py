"""OS guess from the SYN-ACKs the engine captured, plus what service banners say.

Evidence, strongest first:
- the TCP option layout of the SYN-ACK, which each stack's option writer fixes (only telling when
  the SYN offered more than MSS: a stack answers with the options the SYN carried);
- the initial TTL (the observed TTL rounded up to 32, 64, 128 or 255);
- a service banner naming the OS ("OpenSSH_9.2p1 Debian-2", "Microsoft-IIS/10.0");
- the IP ID behaviour across the replies, the window, the DF bit.

The signature table is data/os-signatures.toml, written for netscand from the stacks' source and
documentation. A signature whose TTL, option layout or banner family contradicts what was seen is
out; the rest are scored and weighed against "some other stack" (there are many more stacks than
signatures), so a confidence is a share, not a certainty. Conflicting evidence, or no candidate
reaching MIN_CONFIDENCE, gives None: an honest "unknown" beats a wild guess.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Protocol

import dpkt

INITIAL_TTLS = (32, 64, 128, 255)
MAX_HOPS = 30  # further than this and the rounded-up TTL says nothing reliable
MIN_CONFIDENCE = 0.5
MAX_CONFIDENCE = 0.95  # a fingerprint is never proof

# Score weights (roughly log-odds, in units of TEMPERATURE).
W_TTL = 3
W_LAYOUT = 4
W_WINDOW = 2
W_BANNER = 5
W_NO_DF = -1
OTHER = 4  # the score of "a stack not in the table"
TEMPERATURE = 2.0
# Points by (expected IP ID behaviour, observed behaviour); what is missing scores 0.
IPID_POINTS: dict[str, dict[str, int]] = {
    "zero": {"zero": 2, "incremental": -3, "random": -3, "nonzero": -2},
    "incremental": {"zero": -2, "incremental": 1, "random": -2},
    "random": {"zero": -1, "incremental": -1, "random": 1},
    "zero_or_incremental": {"zero": 1, "incremental": 1, "random": -1},
    "any": {},
}
IPID_INCREMENTAL_SPAN = 4096  # >= 3 non-zero IDs within this arc: a counter
IPID_RANDOM_SPAN = 16384  # >= 3 non-zero IDs spread wider than this: random

OPTION_NAMES = {0: "eol", 1: "nop", 2: "mss", 3: "ws", 4: "sok", 5: "sack", 8: "ts"}
OPTION_DATA_LEN = {2: 2, 3: 1, 4: 0, 8: 8}  # bytes after kind and length, for the fixed-size ones
UNTELLING = frozenset({"mss"})  # what every stack answers to a SYN offering only MSS
MAX_OPTIONS = 40  # a TCP header holds at most 40 bytes of options (data offset 15 x 4 - 20)


@dataclass(frozen=True)
class Observation:
    """What the engine saw in one SYN-ACK from an open port (scan.result.Fingerprint + DF)."""

    ttl: int
    win: int
    ipid: int
    opts: bytes
    df: bool | None = None


class SynAckFields(Protocol):
    """What guess() reads of a SYN-ACK: an Observation, or the engine's scan.result.Fingerprint."""

    @property
    def ttl(self) -> int: ...
    @property
    def win(self) -> int: ...
    @property
    def ipid(self) -> int: ...
    @property
    def opts(self) -> bytes: ...


@dataclass(frozen=True)
class Guess:
    name: str
    family: str
    confidence: float


@dataclass(frozen=True)
class Layout:
    """The option kinds in order. `truncated`: the bytes stop inside the last option."""

    kinds: tuple[str, ...]
    truncated: bool = False

    @property
    def telling(self) -> bool:
        return not set(self.kinds) <= UNTELLING

    def matches(self, layout: tuple[str, ...]) -> bool:
        if self.truncated:
            return layout[: len(self.kinds)] == self.kinds
        return layout == self.kinds


@dataclass(frozen=True)
class Signature:
    name: str
    family: str
    ttl: int
    layouts: tuple[tuple[str, ...], ...]
    windows: frozenset[int]
    ipid: str
    df: bool | None


@dataclass(frozen=True)
class BannerRule:
    pattern: re.Pattern[str]
    family: str
    distro: str


def initial_ttl(ttl: int) -> int | None:
    """The initial TTL a reply was sent with: the observed one rounded up to 32/64/128/255."""
    if not isinstance(ttl, int) or not 1 <= ttl <= 255:
        return None
    return next(t for t in INITIAL_TTLS if ttl <= t)


def option_layout(opts: bytes) -> Layout | None:
    """The layout of raw TCP option bytes, or None when they are malformed. Never raises."""
    if not isinstance(opts, (bytes, bytearray, memoryview)):
        return None
    buf = bytes(opts)
    if len(buf) > MAX_OPTIONS:
        return None  # no TCP header carries these; and dpkt's parser copies the rest per option
    try:
        parsed = dpkt.tcp.parse_opts(buf)
    except Exception:  # dpkt copes with most garbage itself; be sure of the rest
        return None
    kinds: list[str] = []
    pos = 0
    for item in parsed:
        kind = buf[pos]
        name = OPTION_NAMES.get(kind, f"opt{kind}")
        kinds.append(name)
        if item is None:  # a kind byte with no room for its length: the bytes were cut here
            return Layout(tuple(kinds), truncated=True)
        if kind == 0:  # end of option list: the rest is padding
            break
        if kind == 1:
            pos += 1
            continue
        declared = buf[pos + 1]
        if declared < 2:
            return None
        if pos + declared > len(buf):
            return Layout(tuple(kinds), truncated=True)
        expected = OPTION_DATA_LEN.get(kind)
        if expected is not None and declared - 2 != expected:
            return None
        pos += declared
    return Layout(tuple(kinds))


def ipid_behaviour(ipids: Sequence[int]) -> str | None:
    """zero | incremental | random | nonzero | mixed, or None with no IDs at all."""
    ids = [i & 0xFFFF for i in ipids if isinstance(i, int)]
    if not ids:
        return None
    nonzero = [i for i in ids if i]
    if not nonzero:
        return "zero"
    if len(nonzero) < len(ids):
        return "mixed"
    if len(set(nonzero)) >= 3:
        span = _circular_span(nonzero)
        if span < IPID_INCREMENTAL_SPAN:
            return "incremental"
        if span > IPID_RANDOM_SPAN:
            return "random"
    return "nonzero"


def guess(observations: Iterable[SynAckFields], banners: Iterable[str] = ()) -> Guess | None:
    """The OS the evidence points to, with a confidence, or None when it does not point firmly.

    `observations` may also be the engine's scan.result.Fingerprint objects (anything with ttl,
    win, ipid and opts; df is read when present).
    """
    obs = [o for o in (_observation(x) for x in observations or ()) if o is not None]
    banner_families, distros = _banner_evidence(banners)
    if len(banner_families) > 1:
        return None  # banners naming two OS families
    banner_family = next(iter(banner_families), None)

    ttls = {t for t in (initial_ttl(o.ttl) for o in obs) if t is not None}
    if len(ttls) > 1:
        return None  # replies from stacks with different TTLs: not one host's stack
    ttl = ttls.pop() if ttls else None
    if ttl is not None and ttl - max(o.ttl for o in obs if initial_ttl(o.ttl) == ttl) > MAX_HOPS:
        ttl = None

    layouts = {lay for lay in (option_layout(o.opts) for o in obs) if lay is not None and lay.telling}
    if len(layouts) > 1:
        return None  # the same SYN answered with two different option layouts
    layout = layouts.pop() if layouts else None

    windows = Counter(o.win for o in obs if isinstance(o.win, int))
    window = windows.most_common(1)[0][0] if windows else None
    ipid = ipid_behaviour([o.ipid for o in obs])
    no_df = any(o.df is False for o in obs)

    evidence = _Evidence(ttl, layout, window, ipid, no_df)
    if banner_family is not None:
        stack_only = _best(_scores(evidence, None))
        if stack_only is not None and stack_only[0].family != banner_family:
            return None  # the stack firmly says one family, a banner another
    best = _best(_scores(evidence, banner_family))
    if best is None:
        return None
    sig, confidence = best
    name = sig.name
    if sig.family == "Linux" and len(distros) == 1:
        name = f"Linux ({distros.pop()})"
    return Guess(name, sig.family, round(min(confidence, MAX_CONFIDENCE), 2))


@dataclass(frozen=True)
class _Evidence:
    ttl: int | None
    layout: Layout | None
    window: int | None
    ipid: str | None
    no_df: bool


def _scores(ev: _Evidence, banner_family: str | None) -> dict[Signature, float]:
    """Scores of the signatures nothing seen contradicts."""
    scores: dict[Signature, float] = {}
    for sig in _table()[0]:
        if ev.ttl is not None and sig.ttl != ev.ttl:
            continue
        if ev.layout is not None and not any(ev.layout.matches(lay) for lay in sig.layouts):
            continue
        if banner_family is not None and sig.family != banner_family:
            continue
        score = 0.0
        if ev.ttl is not None:
            score += W_TTL
        if ev.layout is not None:
            score += W_LAYOUT
        if ev.window in sig.windows:
            score += W_WINDOW
        if ev.ipid is not None:
            score += IPID_POINTS[sig.ipid].get(ev.ipid, 0)
        if ev.no_df and sig.df:
            score += W_NO_DF
        if banner_family is not None:
            score += W_BANNER
        scores[sig] = score
    return scores


def _best(scores: dict[Signature, float]) -> tuple[Signature, float] | None:
    """The top signature and its share against the others and "some other stack", if firm."""
    if not scores:
        return None  # every signature contradicted by something that was seen
    best = max(scores, key=scores.__getitem__)
    total = sum(math.exp(s / TEMPERATURE) for s in scores.values()) + math.exp(OTHER / TEMPERATURE)
    confidence = math.exp(scores[best] / TEMPERATURE) / total
    return (best, confidence) if confidence >= MIN_CONFIDENCE else None


def _observation(x: object) -> Observation | None:
    if isinstance(x, Observation):
        return x
    try:
        return Observation(getattr(x, "ttl"), getattr(x, "win"), getattr(x, "ipid"), getattr(x, "opts"),
                           getattr(x, "df", None))
    except AttributeError:
        return None


def _banner_evidence(banners: Iterable[str]) -> tuple[set[str], set[str]]:
    families: set[str] = set()
    distros: set[str] = set()
    rules = _table()[1]
    for banner in banners or ():
        if isinstance(banner, (bytes, bytearray)):
            banner = bytes(banner).decode("latin-1")
        if not isinstance(banner, str):
            continue
        for rule in rules:
            if rule.pattern.search(banner):
                families.add(rule.family)
                if rule.distro:
                    distros.add(rule.distro)
    return families, distros


def _circular_span(values: Sequence[int]) -> int:
    """The shortest arc of the 16-bit circle that holds every value (IDs wrap at 65536)."""
    v = sorted(set(values))
    gaps = [b - a for a, b in zip(v, v[1:])] + [v[0] + 0x10000 - v[-1]]
    return 0x10000 - max(gaps)


@cache
def _table() -> tuple[tuple[Signature, ...], tuple[BannerRule, ...]]:
    text = files("netscand").joinpath("data").joinpath("os-signatures.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    sigs = []
    for s in data["signature"]:
        layouts = tuple(tuple(k.strip() for k in lay.split(",")) for lay in s["layouts"])
        if s["ttl"] not in INITIAL_TTLS or s["ipid"] not in IPID_POINTS or not layouts:
            raise ValueError(f"os-signatures.toml: bad signature {s.get('name')!r}")
        sigs.append(Signature(s["name"], s["family"], s["ttl"], layouts, frozenset(s["windows"]),
                              s["ipid"], s.get("df")))
    rules = tuple(BannerRule(re.compile(b["pattern"], re.IGNORECASE), b["family"], b["distro"])
                  for b in data["banner"])
    families = {s.family for s in sigs}
    if any(r.family not in families for r in rules):
        raise ValueError("os-signatures.toml: a banner names a family no signature has")
    return tuple(sigs), rules
