"""Random loss on the scanner's link, applied by nftables in the bridge namespace.

The scanner sends with AF_PACKET, which skips netfilter's output hooks in its own namespace,
and its AF_PACKET taps see frames before any ingress hook there: so both directions are
dropped on the bridge side of the link, at the netdev ingress and egress hooks of `s-scan`.
"""

from __future__ import annotations

import subprocess

from netscand.lab.errors import LabError
from netscand.lab.namespaces import exec_argv
from netscand.lab.topology import SCAN_PORT, bridge_ns

TABLE = "lab_impair"
SCALE = 10_000  # loss in hundredths of a percent, so fractional percentages work


def ruleset(loss_pct: float) -> str:
    """Replaces the whole table in one transaction, so a change never lets a burst through."""
    threshold = round(loss_pct * SCALE / 100)
    rule = f"  numgen random mod {SCALE} < {threshold} counter drop\n" if threshold > 0 else ""
    chains = "".join(
        f" chain {hook} {{\n  type filter hook {hook} device \"{SCAN_PORT}\" priority filter; policy accept;\n"
        f"{rule} }}\n"
        for hook in ("ingress", "egress")
    )
    return f"table netdev {TABLE} {{}}\ndelete table netdev {TABLE}\ntable netdev {TABLE} {{\n{chains}}}\n"


def set_loss(prefix: str, loss_pct: float) -> None:
    if not 0 <= loss_pct <= 100:
        raise LabError(f"loss must be between 0 and 100 percent, not {loss_pct}")
    proc = subprocess.run(exec_argv(bridge_ns(prefix), ["nft", "-f", "-"]), input=ruleset(loss_pct),
                          capture_output=True, text=True)
    if proc.returncode:
        raise LabError(f"setting loss in {bridge_ns(prefix)} failed: {proc.stderr.strip()}")
