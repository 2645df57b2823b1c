"""What a worker reports when one of its shards finishes (a probe type's `tally`), as result
records. Answers that prove something (an open port, a host up) are reported as they arrive;
a tally adds what only the end of a shard can tell, such as which probes got no answer."""

from __future__ import annotations

from collections.abc import Iterator

from netscand.engine.plan import Plan
from netscand.engine.shm import (
    R_PORT,
    R_TALLY,
    S_CLOSED,
    S_NONE,
    S_OPEN,
    S_UNREACH,
    pack_result,
)

LIST_CAP = 25  # per host and shard, closed or filtered ports are listed one by one up to this


def nothing(plan: Plan, shard: int, states: bytes) -> Iterator[bytes]:
    """For probes whose answers say all there is (a host is up): silence says nothing more."""
    return iter(())


def ports(plan: Plan, shard: int, states: bytes) -> Iterator[bytes]:
    """Per host that answered in this shard: closed and filtered counts, and the ports
    themselves where there are few (the plan's rows, whichever its layout)."""
    for host, first, seg in plan.rows(shard, states):
        closed, opened = seg.count(S_CLOSED), seg.count(S_OPEN)
        if closed + opened == 0:
            continue
        filtered = len(seg) - closed - opened
        ip = plan.hosts[host]
        yield pack_result(R_TALLY, plan_gen=plan.gen, shard=shard, ip=ip, a=closed, b=filtered)
        for listed, count in (((S_CLOSED,), closed), ((S_NONE, S_UNREACH), filtered)):
            if 0 < count <= LIST_CAP:
                yield from _listed(plan, ip, first, seg, listed)


def udp_ports(plan: Plan, shard: int, states: bytes) -> Iterator[bytes]:
    """As `ports`, with UDP's three states apart (where TCP's filtered is silence and
    unreachables alike, UDP's silence is open|filtered): per host that answered anything in
    this shard, a = closed, b = silent, win = filtered (unreachable) counts, and the ports of
    each state the host has few of."""
    for host, first, seg in plan.rows(shard, states):
        closed, silent, filtered = seg.count(S_CLOSED), seg.count(S_NONE), seg.count(S_UNREACH)
        if silent == len(seg):
            continue
        ip = plan.hosts[host]
        yield pack_result(R_TALLY, plan_gen=plan.gen, shard=shard, ip=ip, a=closed, b=silent, win=filtered)
        for state, count in ((S_CLOSED, closed), (S_UNREACH, filtered), (S_NONE, silent)):
            if 0 < count <= LIST_CAP:
                yield from _listed(plan, ip, first, seg, (state,))


def _listed(plan: Plan, ip: int, first: int, seg: bytes, states: tuple[int, ...]) -> Iterator[bytes]:
    """One record per port of `seg` in one of `states`, with its own state."""
    for j, value in enumerate(seg):
        if value in states:
            yield pack_result(R_PORT, state=value, plan_gen=plan.gen, ip=ip, port=plan.ports[first + j])
