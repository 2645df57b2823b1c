"""The paced schedule (engine/paced.py) driven by a simulated clock: its order and times, with
small gaps. No sockets: what it decides is what the worker sends."""

from __future__ import annotations

from collections import defaultdict

from netscand.engine.paced import Schedule
from netscand.engine.plan import Plan
from netscand.engine.shm import S_CLOSED, S_OPEN

STEP = 0.001  # the simulated clock's step, s


def paced_plan(nh: int = 4, np_: int = 6, gap_ms: int = 50, jitter_ms: int = 20, retries: int = 1,
               silent_probes: int = 0) -> Plan:
    return Plan(gen=1, kind=1, slot=0, share=1, retries=retries, key=b"k" * 16, ifindex=1, src_ip=1,
                src_mac=b"\0" * 6, sport_base=61440, rate=1000.0, timeout_init_ms=100, timeout_min_ms=100,
                timeout_max_ms=100, shard_size=nh * np_, hosts=tuple(range(10, 10 + nh)),
                macs=(b"\0" * 6,) * nh, ports=tuple(range(20, 20 + np_)), gap_ms=gap_ms, jitter_ms=jitter_ms,
                silent_probes=silent_probes)


def run(plan: Plan, answer: dict[tuple[int, int], int], timeout: float = 0.1,
        until: float = 30.0) -> tuple[list[tuple[float, int, int]], float]:
    """Every send (time, host, port) of shard 0 until the schedule is finished; a probe of a
    (host, port) in `answer` gets that state at once; returns the sends and the finish time."""
    states = memoryview(bytearray(plan.shard_size))
    schedule = Schedule(plan, 0, states, 0.0)
    sends, now = [], 0.0
    while not schedule.finished(now) and now < until:
        while (hit := schedule.pop(now, timeout)) is not None:
            sends.append((now, *hit))
            if hit in answer:
                states[plan.index(*hit)] = answer[hit]
        now += STEP
    assert schedule.finished(now)
    return sends, now


def per_host(sends: list[tuple[float, int, int]]) -> dict[int, list[tuple[float, int]]]:
    out: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for at, host, port in sends:
        out[host].append((at, port))
    return out


def test_no_two_probes_to_a_host_closer_than_the_gap_and_the_hosts_interleave() -> None:
    plan = paced_plan(gap_ms=50, jitter_ms=20, retries=0)
    sends, _ = run(plan, {})
    for probes in per_host(sends).values():
        gaps = [b[0] - a[0] for a, b in zip(probes, probes[1:])]
        assert min(gaps) >= 0.050 - 1e-9
        assert max(gaps) < 0.070 + STEP + 1e-9  # gap + jitter, to the simulated clock's step
        assert len(set(round(g, 3) for g in gaps)) > 1  # jittered, not a fixed beat
    first = sorted((probes[0][0], host) for host, probes in per_host(sends).items())
    # Every host starts within the second gap: the first is left to a predecessor's last probes.
    assert all(0.050 <= at < 0.100 for at, _ in first)
    assert len({at for at, _ in first}) == len(first)  # at phases of its own, not all at once


def test_every_host_and_port_once_per_round_in_a_keyed_order_of_its_own() -> None:
    plan = paced_plan(nh=5, np_=8, retries=0)
    sends, _ = run(plan, {})
    assert sorted((h, p) for _, h, p in sends) == [(h, p) for h in range(5) for p in range(8)]
    orders = {tuple(p for _, p in probes) for probes in per_host(sends).values()}
    assert len(orders) > 1  # each host its own order
    assert all(order != tuple(range(8)) for order in orders)  # not sequential ports


def test_retries_only_of_what_got_no_answer_paced_after_the_round_and_its_timeout() -> None:
    plan = paced_plan(nh=3, np_=6, gap_ms=50, jitter_ms=10, retries=2)
    answer = {(h, p): S_OPEN if p % 3 == 0 else S_CLOSED for h in range(3) for p in range(6) if p % 2 == 0}
    sends, _ = run(plan, answer, timeout=0.1)
    counts: dict[tuple[int, int], int] = defaultdict(int)
    for _, h, p in sends:
        counts[(h, p)] += 1
    for h in range(3):
        for p in range(6):
            assert counts[(h, p)] == (1 if (h, p) in answer else 3)  # first round + 2 retries
    for probes in per_host(sends).values():
        times = [at for at, _ in probes]
        assert min(b - a for a, b in zip(times, times[1:])) >= 0.050 - 1e-9
        # The first retry waits for the first round's replies: its timeout after its last probe.
        assert times[6] - times[5] >= 0.100 - 1e-9


def test_the_silent_probes_go_first_in_a_keyed_order_then_the_rest() -> None:
    plan = paced_plan(nh=4, np_=20, retries=0, silent_probes=6)
    sends, _ = run(plan, {(h, p): S_CLOSED for h in range(4) for p in range(20)})
    heads = set()
    for probes in per_host(sends).values():
        order = [p for _, p in probes]
        assert sorted(order[:6]) == list(range(6)) and sorted(order[6:]) == list(range(6, 20))
        assert order[:6] != list(range(6)) and order[6:] != list(range(6, 20))
        heads.add(tuple(order[:6]))
    assert len(heads) > 1  # each host its own order among them too


def test_a_host_that_answers_none_of_its_silent_probes_gets_no_more() -> None:
    plan = paced_plan(nh=3, np_=20, gap_ms=50, jitter_ms=0, retries=1, silent_probes=4)
    sends, _ = run(plan, {(0, p): S_CLOSED for p in range(20)}
                   | {(2, p): S_OPEN for p in range(4, 20)})
    hosts = per_host(sends)
    assert len(hosts[0]) == 20  # answered everything: its ports all probed, none retried
    # Silent: its 4 silent probes, and one more sent before their 100 ms timeout had passed
    # (a probe is due every 50 ms); then none, no retry round either.
    assert sorted(p for _, p in hosts[1][:4]) == [0, 1, 2, 3]
    assert len(hosts[1]) == 5
    # An answer to the probe after them keeps a host: probed to its end, its silent ones retried.
    assert len(hosts[2]) == 20 + 4


def test_a_host_with_every_port_silent_probes_is_not_retried_once_silent() -> None:
    plan = paced_plan(nh=2, np_=5, gap_ms=50, jitter_ms=0, retries=2, silent_probes=5)
    sends, _ = run(plan, {(0, 3): S_OPEN})
    hosts = per_host(sends)
    assert len(hosts[1]) == 5  # its round, then given up: no retries of a silent host
    assert len(hosts[0]) == 5 + 4 + 4  # it answered: retried as any other


def test_the_schedule_ends_once_the_last_probes_replies_are_waited_out() -> None:
    plan = paced_plan(nh=2, np_=3, gap_ms=50, jitter_ms=0, retries=0)
    sends, end = run(plan, {})
    assert end >= max(at for at, _, _ in sends) + 0.1
    assert end < max(at for at, _, _ in sends) + 0.1 + 2 * STEP


def test_a_retry_round_goes_in_a_keyed_order_of_its_own_per_host_not_port_order() -> None:
    plan = paced_plan(nh=4, np_=30, gap_ms=20, jitter_ms=0, retries=1)
    answer = {(h, p): S_CLOSED for h in range(4) for p in range(0, 30, 3)}  # a third answered
    sends, _ = run(plan, answer)
    retries = set()
    for probes in per_host(sends).values():
        again = [p for _, p in probes[30:]]
        assert sorted(again) == [p for p in range(30) if p % 3]
        assert again != sorted(again)
        retries.add(tuple(again))
    assert len(retries) == 4  # each host its own
