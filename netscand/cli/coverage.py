"""How the command line words a result's coverage (docs/api.md, Coverage): one line for the
scan, and the devices whose silent ports may be lost rather than filtered."""

from __future__ import annotations

# Below this a device's silent ports are worth a second look: with the default 3 retries it
# means a loss estimate above about 18 %.
DOUBTFUL = 0.999


def summary(coverage: dict) -> str:
    """E.g. "2,101,248 probes sent, 1,046 answered (12 after a retry), est. loss 1.1 %"."""
    loss = coverage["estimated_loss"]
    said = "unknown (no retries or no answers)" if loss is None else f"{100 * loss:.1f} %"
    return (f"{coverage['probes_sent']:,} probes sent, {coverage['probes_answered']:,} answered "
            f"({coverage['probes_recovered']:,} after a retry), est. loss {said}")


def doubtful(device: dict) -> str | None:
    """A line on a device whose silent ports may be lost, None for one whose are filtered."""
    cov = device.get("coverage")
    if cov is None or cov["confidence"] >= DOUBTFUL:
        return None
    return (f"confidence {cov['confidence']:.3f} that its silent ports are filtered, not lost "
            f"({cov['answered']:,} of {cov['probes']:,} probes answered, {cov['recovered']:,} after a retry)")
