"""Impairments of the scanner's link, applied by nftables in the bridge namespace: random loss
both ways, and a rate limit on what the scanner sends (a throttled uplink).

The scanner sends with AF_PACKET, which skips netfilter's output hooks in its own namespace,
and its AF_PACKET taps see frames before any ingress hook there: so both directions are
dropped on the bridge side of the link, at the netdev ingress and egress hooks of `s-scan`
(ingress there: the frames the scanner sent).
"""

from __future__ import annotations

import subprocess

from netscand.lab.errors import LabError
from netscand.lab.namespaces import exec_argv
from netscand.lab.topology import SCAN_PORT, bridge_ns

TABLE = "lab_impair"
SCALE = 10_000  # loss in hundredths of a percent, so fractional percentages work
LIMIT_BURST_S = 0.02  # a throttle lets a burst of this many seconds' frames through, as a shaper's queue


def ruleset(loss_pct: float, limit_pps: int = 0) -> str:
    """Replaces the whole table in one transaction, so a change never lets a burst through.
    `limit_pps` > 0: frames the scanner sends beyond that many a second are dropped."""
    threshold = round(loss_pct * SCALE / 100)
    loss = f"  numgen random mod {SCALE} < {threshold} counter drop\n" if threshold > 0 else ""
    burst = max(5, round(limit_pps * LIMIT_BURST_S))
    limit = f"  limit rate over {limit_pps}/second burst {burst} packets counter drop\n" if limit_pps > 0 else ""
    chains = "".join(
        f" chain {hook} {{\n  type filter hook {hook} device \"{SCAN_PORT}\" priority filter; policy accept;\n"
        f"{loss}{limit if hook == 'ingress' else ''} }}\n"
        for hook in ("ingress", "egress")
    )
    return f"table netdev {TABLE} {{}}\ndelete table netdev {TABLE}\ntable netdev {TABLE} {{\n{chains}}}\n"


def set_loss(prefix: str, loss_pct: float, limit_pps: int = 0) -> None:
    """The lab's impairment from now on: `loss_pct` random loss, and a throttle of the scanner's
    sends to `limit_pps` frames a second (0: none)."""
    if not 0 <= loss_pct <= 100:
        raise LabError(f"loss must be between 0 and 100 percent, not {loss_pct}")
    if limit_pps < 0:
        raise LabError(f"a rate limit is a number of frames a second, not {limit_pps}")
    proc = subprocess.run(exec_argv(bridge_ns(prefix), ["nft", "-f", "-"]), input=ruleset(loss_pct, limit_pps),
                          capture_output=True, text=True)
    if proc.returncode:
        raise LabError(f"setting loss in {bridge_ns(prefix)} failed: {proc.stderr.strip()}")
