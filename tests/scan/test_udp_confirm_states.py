"""PortStates.confirm: a rate-limited host's silent UDP port, asked again, moves to closed or
filtered once, whatever is asked twice or was counted already, and a device still shows every
probed port exactly once (listed + not shown = probed)."""

from __future__ import annotations

from netscand.engine.shm import S_CLOSED
from netscand.scan.result import Host, ScanResult
from tests.scan.test_udp_result import (
    udp_port,
    udp_ports,
    udp_scanned,
    udp_tally,
    valid,
)

PROBED = tuple(range(1000, 1030))  # 30 UDP ports: 7, 9, 13 answered closed, the other 27 silent


def shown(result: ScanResult) -> int:
    device = valid(result.devices()[0])
    return len(udp_ports(device)) + sum(device.get("not_shown_udp", {}).values())


def limited() -> tuple[ScanResult, Host]:
    return udp_scanned(30, [udp_tally(closed=3, silent=27), *(udp_port(p, S_CLOSED) for p in PROBED[:3])])


def test_silent_ports_confirmed_closed_or_filtered_leave_the_silent_count() -> None:
    result, h = limited()
    states = h.states("udp")
    assert states.icmp_limited and states.silent_ports(PROBED) == set(PROBED[3:])
    for port in PROBED[3:26]:  # 26 closed in all: past LIST_LIMIT, counted
        states.confirm(port, "closed")
    states.confirm(PROBED[26], "filtered")
    device = valid(result.device(h))
    assert device["not_shown_udp"] == {"closed": 26, "open|filtered": 3}
    assert udp_ports(device) == {PROBED[26]: "filtered"}
    assert "udp_icmp_limited" not in device  # what is left silent is no longer the limit's pattern
    assert shown(result) == 30 and states.silent_ports(PROBED) == set(PROBED[27:])


def test_confirming_is_idempotent_and_never_moves_a_known_port() -> None:
    result, h = limited()
    states = h.states("udp")
    states.answered(PROBED[29])  # open by a query's answer
    for _ in range(2):
        for port in (PROBED[0], PROBED[5], PROBED[29]):  # known closed, silent, open
            states.confirm(port, "closed")
        states.confirm(PROBED[5], "filtered")
    assert (states.closed_count, states.unreachable_count, states.silent_count) == (4, 0, 25)
    assert udp_ports(valid(result.device(h))) == {PROBED[0]: "closed", PROBED[1]: "closed", PROBED[2]: "closed",
                                                    PROBED[5]: "closed", PROBED[29]: "open"}
    states.answered(PROBED[5])  # a confirmed port is not made open after the fact
    assert states.open_count == 1 and shown(result) == 30


def test_with_a_cut_closed_list_moves_stop_at_the_silent_count() -> None:
    # 40 closed, of which only 26 listed (cut): the 14 unlisted closed ones look silent too.
    result, h = udp_scanned(50, [udp_tally(closed=40, silent=10), *(udp_port(p, S_CLOSED) for p in range(26))])
    states = h.states("udp")
    asked = states.silent_ports(range(50))
    assert asked == set(range(26, 50))  # every probed port not known open, closed or filtered
    for port in sorted(asked):
        states.confirm(port, "closed")
    assert states.silent_count == 0 and states.closed_count == 50 and shown(result) == 50
