"""Probe types, one module each (zmap's probe modules). For the engine, adding a probe type is
one module that declares a ProbeType (base.py: its plan kind, the receive filter's clauses for
its replies, its probe with the reply parser, its tally, and the traits the scan layer plans by)
and one line below. Which probe types a scan sends, and where, is the scan layer's choice
(scan/planner.py): a new probe runs in scans once the planner asks for it.

A probe is built from a Plan and offers two calls:
  frame(host, port, tick) -> the frame to send to host index `host`, port index `port`
                             (patched in place in a template; `tick` is a coarse send time)
  answer(frame) -> Answer | None: a reply that provably belongs to this plan, or None

The workers' receive filter is built from the types registered when a worker first opens its
sockets on an interface: register before that (at import, as below).
"""

from __future__ import annotations

from netscand.engine import bpf
from netscand.engine.bpf import Clause
from netscand.engine.clock import TICK_MASK
from netscand.engine.probes import arp, icmp_echo, tcp_ack, tcp_syn, tcp_syn_kernel, udp
from netscand.engine.probes.base import Answer, Probe, ProbeType

PROBES: dict[int, ProbeType] = {}  # by plan kind

__all__ = ["PROBES", "Answer", "Probe", "ProbeType", "register", "reply_clauses"]


def register(probe: ProbeType) -> ProbeType:
    """Make a probe type known to the engine; its kind must be new, and fit the plan header's
    byte, and its reply clauses must still let the receive filter be built (here, not in every
    worker as it opens its first socket)."""
    if not 0 < probe.kind <= 0xFF:
        raise ValueError(f"probe kind {probe.kind} of {probe.name} is not in 1-255")
    known = PROBES.get(probe.kind)
    if known is probe:
        return probe
    if known is not None:
        raise ValueError(f"probe kind {probe.kind} is {known.name}'s, not {probe.name}'s")
    try:
        bpf.reply_filter([*reply_clauses(0, TICK_MASK), *probe.replies(0, TICK_MASK)], 0)
    except ValueError as exc:
        raise ValueError(f"probe {probe.name}'s reply clauses make the receive filter too long: {exc}") from None
    PROBES[probe.kind] = probe
    return probe


def reply_clauses(lo: int, hi: int) -> list[Clause]:
    """The receive filter's clauses for replies to source ports [lo, hi], of every probe type."""
    return [clause for probe in PROBES.values() for clause in probe.replies(lo, hi)]


register(tcp_syn.PROBE)
register(arp.PROBE)
register(icmp_echo.PROBE)
register(tcp_ack.PROBE)
register(udp.PROBE)
# After tcp_syn: the first probe type of a protocol is the scan layer's port scan of it.
register(tcp_syn_kernel.PROBE)
