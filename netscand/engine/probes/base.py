"""What a probe module declares (ProbeType), the probe it builds per plan, and what replies carry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from netscand.engine.bpf import Clause
from netscand.engine.plan import Plan

TTL = 64  # of every probe sent at the IP layer: Linux's default, so probes look like its own
NO_PORTS = (0,)  # the ports of a plan whose probe type probes none (ProbeType.ports)


class Answer(NamedTuple):
    host: int  # index into plan.hosts
    port: int  # index into plan.ports
    state: int  # shm.S_* value
    tick: int  # send tick echoed by the reply, or -1 when the protocol can't carry one
    ttl: int = 0
    win: int = 0
    flags: int = 0
    ipid: int = 0
    opts: bytes = b""
    mac: bytes = b""


class Probe(Protocol):
    """One plan's probe: frames to send and the parser of replies (total: None for anything
    that is not provably a reply to this plan)."""

    plan: Plan

    def frame(self, host: int, port: int, tick: int) -> bytearray: ...

    def answer(self, frame: bytes) -> Answer | None: ...


# What a worker reports when a shard finishes, from the shard's state bytes (tally.py).
Tally = Callable[[Plan, int, bytes], Iterator[bytes]]
# The receive filter's clauses for a probe's replies to source ports [lo, hi] (bpf.py).
Replies = Callable[[int, int], tuple[Clause, ...]]


@dataclass(frozen=True)
class ProbeType:
    """Everything the engine knows of one probe module (its frames, reply filter, parser and
    tally), and the traits the scan layer plans with; which probe types a scan sends, and to
    which targets, the scan layer chooses (scan/planner.py)."""

    name: str
    kind: int  # its number in a plan's header: unique among the registered probe types
    build: Callable[[Plan], Probe]
    replies: Replies
    tally: Tally
    # Its plans probe ports; without, a plan has the one pseudo-port NO_PORTS.
    ports: bool = True
    # Its answers are port states (open, closed, filtered): the port scan the per-host budget
    # applies to and the result counts closed and filtered ports of.
    port_states: bool = False
    # With port_states: the protocol its port states are of ("tcp", "udp").
    protocol: str = "tcp"
    # It finds on-link hosts and their MACs (ARP): never routed, so it may also resolve gateways
    # the policy does not allow as targets, and the scan goes on past it with the MACs found.
    resolves_neighbours: bool = False
    # Fixed reply timeout and retries, whatever the scan's; None: the scan's.
    timeout_ms: int | None = None
    retries: int | None = None
    # For a probe that sends from its plan's own source port range (Plan.sport_lo-sport_hi):
    # the clauses for its replies to ports [lo, hi] of that range. The receive filter adds them
    # for the span of its live plans' ranges (intake.py), which is mostly the kernel's own
    # ephemeral range: only what a reply to this probe can be, not replies(lo, hi)'s width.
    range_replies: Replies | None = None
