"""The UDP tally's records: per host that answered anything in a shard, closed (a), silent (b)
and filtered (win) counts, and the ports of each state the host has few of, in their own state
(TCP's tally, beside it, still lists silence and unreachables together as filtered)."""

from __future__ import annotations

from netscand.engine import plan as plans
from netscand.engine import tally
from netscand.engine.probes import udp
from netscand.engine.shm import (
    R_PORT,
    R_TALLY,
    S_CLOSED,
    S_NONE,
    S_OPEN,
    S_UNREACH,
    Result,
)

H0, H1, H2 = 0xC6120010, 0xC6120011, 0xC6120012


def make_plan(ports: tuple[int, ...], shard_size: int = 1024) -> plans.Plan:
    return plans.Plan(gen=7, kind=udp.PROBE.kind, slot=0, share=1, retries=1, key=b"t" * 16, ifindex=2,
                      src_ip=0xC6120001, src_mac=b"\2" * 6, sport_base=61440, rate=100.0, timeout_init_ms=500,
                      timeout_min_ms=100, timeout_max_ms=1000, shard_size=shard_size, hosts=(H0, H1, H2),
                      macs=(b"\2" * 6,) * 3, ports=ports)


def records(plan: plans.Plan, shard: int, states: list[int]) -> list[Result]:
    return [Result.unpack(r) for r in udp.PROBE.tally(plan, shard, bytes(states))]


def test_each_state_is_counted_and_listed_apart() -> None:
    plan = make_plan((53, 123, 161, 500))
    # Port-major: [port0: H0 H1 H2, port1: H0 H1 H2, ...]
    states = [S_OPEN, S_NONE, S_NONE,
              S_CLOSED, S_NONE, S_NONE,
              S_UNREACH, S_NONE, S_UNREACH,
              S_NONE, S_NONE, S_NONE]
    got = records(plan, 0, states)
    tallies = {(r.ip, r.a, r.b, r.win) for r in got if r.kind == R_TALLY}
    assert tallies == {(H0, 1, 1, 1), (H2, 0, 3, 1)}  # H1 answered nothing: not reported
    listed = {(r.ip, r.port, r.state) for r in got if r.kind == R_PORT}
    assert listed == {(H0, 123, S_CLOSED), (H0, 161, S_UNREACH), (H0, 500, S_NONE),
                      (H2, 161, S_UNREACH), (H2, 53, S_NONE), (H2, 123, S_NONE), (H2, 500, S_NONE)}
    assert all(r.plan_gen == 7 and r.shard == 0 for r in got if r.kind == R_TALLY)


def test_a_state_past_the_list_cap_is_counted_only() -> None:
    cap = tally.LIST_CAP
    ports = tuple(range(1000, 1000 + 2 * cap + 3))
    plan = make_plan(ports)
    per_port = [S_CLOSED] * (cap + 1) + [S_NONE] * cap + [S_UNREACH, S_OPEN]
    states = [s for value in per_port for s in (value, S_NONE, S_NONE)]
    got = records(plan, 0, states)
    assert [(r.ip, r.a, r.b, r.win) for r in got if r.kind == R_TALLY] == [(H0, cap + 1, cap, 1)]
    listed = [(r.port, r.state) for r in got if r.kind == R_PORT]  # not the cap + 1 closed ones
    assert sorted(listed) == [(1000 + cap + 1 + i, S_NONE) for i in range(cap)] + [(1000 + 2 * cap + 1, S_UNREACH)]


def test_a_later_shard_maps_its_offsets_to_hosts_and_ports() -> None:
    """Shards cut the port-major order anywhere: the second shard of 4 starts at host H1."""
    plan = make_plan((7, 9), shard_size=4)
    got = records(plan, 1, [S_CLOSED, S_NONE])  # offsets 4, 5: (port 9, H1), (port 9, H2)
    assert [(r.ip, r.a, r.b, r.win, r.shard) for r in got if r.kind == R_TALLY] == [(H1, 1, 0, 0, 1)]
    assert [(r.ip, r.port, r.state) for r in got if r.kind == R_PORT] == [(H1, 9, S_CLOSED)]
