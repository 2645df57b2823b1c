"""A plan's reply timeout from its measured round-trip times (Jacobson/Karels, as TCP and nmap)."""

from __future__ import annotations

from netscand.engine.plan import Plan


class RttEstimator:
    __slots__ = ("init", "max", "min", "rttvar", "srtt")

    def __init__(self, plan: Plan) -> None:
        self.init = plan.timeout_init_ms / 1000
        self.min = plan.timeout_min_ms / 1000
        self.max = plan.timeout_max_ms / 1000
        self.srtt: float | None = None
        self.rttvar = 0.0

    def sample(self, rtt: float) -> None:
        # Past the longest timeout no sample is believable (the send tick wraps soon after):
        # one would only push the timeout to its maximum.
        if rtt > self.max:
            return
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar += (abs(rtt - self.srtt) - self.rttvar) / 4
            self.srtt += (rtt - self.srtt) / 8

    def timeout(self) -> float:
        """How long a pass waits for late replies before its retry (or its end)."""
        if self.srtt is None:
            return self.init
        return min(max(self.srtt + 4 * self.rttvar, self.min), self.max)
