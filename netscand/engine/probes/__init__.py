"""Probe types, one module each (zmap's probe modules): what a probe frame looks like and which
received frames answer it. Adding a probe type means adding one module and one entry below.

A probe is built from a Plan and offers two calls:
  frame(host, port, tick) -> the frame to send to host index `host`, port index `port`
                             (patched in place in a template; `tick` is a coarse send time)
  answer(frame) -> Answer | None: a reply that provably belongs to this plan, or None
"""

from __future__ import annotations

from netscand.engine.plan import KIND_ARP, KIND_ICMP_ECHO, KIND_TCP_ACK, KIND_TCP_SYN, Plan
from netscand.engine.probes.arp import Arp
from netscand.engine.probes.base import Answer, Probe
from netscand.engine.probes.icmp_echo import IcmpEcho
from netscand.engine.probes.tcp_ack import TcpAck
from netscand.engine.probes.tcp_syn import TcpSyn

_KINDS: dict[int, type] = {KIND_TCP_SYN: TcpSyn, KIND_ARP: Arp, KIND_ICMP_ECHO: IcmpEcho, KIND_TCP_ACK: TcpAck}

__all__ = ["Answer", "Probe", "probe_for"]


def probe_for(plan: Plan) -> Probe:
    return _KINDS[plan.kind](plan)
