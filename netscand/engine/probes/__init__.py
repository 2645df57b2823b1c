"""Probe types, one module each (zmap's probe modules). Adding a probe type is one module that
declares a ProbeType (base.py: its plan kind, the receive filter's clauses for its replies, its
probe with the reply parser, its tally, and what the scan runner routes by) and one line below.

A probe is built from a Plan and offers two calls:
  frame(host, port, tick) -> the frame to send to host index `host`, port index `port`
                             (patched in place in a template; `tick` is a coarse send time)
  answer(frame) -> Answer | None: a reply that provably belongs to this plan, or None

The workers' receive filter is built from the types registered when a worker first opens its
sockets on an interface: register before that (at import, as below).
"""

from __future__ import annotations

from netscand.engine.bpf import Clause
from netscand.engine.plan import Plan
from netscand.engine.probes import arp, icmp_echo, tcp_ack, tcp_syn
from netscand.engine.probes.base import Answer, Probe, ProbeType

PROBES: dict[int, ProbeType] = {}  # by plan kind

__all__ = ["PROBES", "Answer", "Probe", "ProbeType", "probe_for", "register", "reply_clauses"]


def register(probe: ProbeType) -> ProbeType:
    """Make a probe type known to the engine; its kind must be new, and fit the plan header's byte."""
    if not 0 < probe.kind <= 0xFF:
        raise ValueError(f"probe kind {probe.kind} of {probe.name} is not in 1-255")
    if PROBES.setdefault(probe.kind, probe) is not probe:
        raise ValueError(f"probe kind {probe.kind} is {PROBES[probe.kind].name}'s, not {probe.name}'s")
    return probe


register(tcp_syn.PROBE)
register(arp.PROBE)
register(icmp_echo.PROBE)
register(tcp_ack.PROBE)


def probe_for(plan: Plan) -> Probe:
    return PROBES[plan.kind].build(plan)


def reply_clauses(lo: int, hi: int) -> list[Clause]:
    """The receive filter's clauses for replies to source ports [lo, hi], of every probe type."""
    return [clause for probe in PROBES.values() for clause in probe.replies(lo, hi)]
