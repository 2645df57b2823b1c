"""How much of a scan the network let through: its probes sent, answered, retried and
recovered (the engine's counts, engine/coverage.py), the round-trip loss they show, and per host
a confidence that the ports it left silent are really filtered, not lost.

The estimator. A probe that is answered only on attempt k > 0 had its first k attempts lost
(the probe or its answer). With a round-trip loss rate p, independent per attempt, and R
retries, a port that answers is answered on attempt k with probability p^k (1 - p), so among
the probes answered at all, the share s that needed a retry is

    s = (p - p^(R+1)) / (1 - p^(R+1))

which is p itself but for the p^(R+1) term (negligible at the default 3 retries); the estimate
is that equation solved for p (bisection: s grows with p). Its limits: only probes that were
answered give evidence (a filtered port never answers, whatever the loss); a host that
rate-limits its answers (RSTs, ICMP unreachables) looks like loss; a late answer that lands
after its retry was queued counts as recovered, so the estimate errs high; without retries
(R = 0) nothing is recovered, and the loss is unknown (null).

A host's confidence that a silent port is silent and not lost is 1 - p^(R+1): the chance that
at least one of its attempts went through and back. Its p is the host's own estimate shrunk
towards the scan's (SHRINK answered probes' worth of the scan's share), so a host with few
answers is not judged by two of them; a host that answered no probe of the port scan at all
(up by ARP or ping alone) gives no evidence of its path, and is given SILENT_HOST_LOSS at least.
"""

from __future__ import annotations

from typing import Any

from netscand.engine.coverage import Counts

SHRINK = 20  # answered probes' worth of the scan's loss share in a host's estimate
SILENT_HOST_LOSS = 0.5  # the loss assumed, at least, of a host that answered no probe
_BISECTIONS = 40  # 2^-40: far finer than any count supports


def share_retried(p: float, retries: int) -> float:
    """Of the probes answered, the share that needed a retry, at round-trip loss p."""
    if p >= 1:
        return retries / (retries + 1)  # the limit as p -> 1: attempts equally likely
    tail = p ** (retries + 1)
    return (p - tail) / (1 - tail)


def loss_from_share(share: float, retries: int) -> float:
    """The round-trip loss p whose share_retried is `share` (module docstring)."""
    if share <= 0:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if share_retried(mid, retries) < share else (lo, mid)
    return (lo + hi) / 2


def estimated_loss(counts: Counts, retries: int) -> float | None:
    """The scan's round-trip loss estimate; None without evidence (no answer, or no retries)."""
    if not counts.answered or retries <= 0:
        return None
    return loss_from_share(counts.recovered / counts.answered, retries)


def host_loss(counts: Counts, scan_loss: float | None, retries: int) -> float:
    """A host's loss: its own share of recovered answers, shrunk towards the scan's."""
    prior = share_retried(scan_loss or 0.0, retries)
    share = (counts.recovered + SHRINK * prior) / (counts.answered + SHRINK)
    loss = loss_from_share(share, retries)
    return loss if counts.answered else max(loss, SILENT_HOST_LOSS)


def confidence(loss: float, retries: int) -> float:
    """That a probe of a silent port got through (and an answer would have come back) at least once."""
    return 1 - loss ** (retries + 1)


def scan_document(counts: Counts, retries: int) -> dict[str, Any]:
    """The result document's `coverage`."""
    loss = estimated_loss(counts, retries)
    return {
        "probes_sent": counts.sent,
        "probes_answered": counts.answered,
        "probes_retried": counts.retried,
        "probes_recovered": counts.recovered,
        "retries": retries,
        "estimated_loss": None if loss is None else round(loss, 4),
    }


def host_document(counts: Counts, scan_loss: float | None, retries: int) -> dict[str, Any]:
    """A device's `coverage`."""
    loss = host_loss(counts, scan_loss, retries)
    return {
        "probes": counts.sent,
        "answered": counts.answered,
        "recovered": counts.recovered,
        "confidence": round(confidence(loss, retries), 4),
    }
