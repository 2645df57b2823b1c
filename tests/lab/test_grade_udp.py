"""grade.udp_state_grades: each probed UDP port's reported state against the one the truth implies
(bench/deep.py tabulates these for netscand and nmap). Pure: a truth written here, no lab."""

from __future__ import annotations

from typing import Any

from netscand.lab.grade import OK, UNCONFIRMED, UNKNOWN, WRONG, udp_state_grades

TRUTH: dict[str, Any] = {
    "hosts": [{"name": "s2", "ip": "198.18.0.231", "netbios": {"name": "FILES", "workgroup": "LAB"},
               "udp": {"69": {"service": "tftp"}}, "udp_filtered": [5060], "udp_silent": [500]},
              {"name": "h1", "ip": "198.18.0.10"}],
    "router": {"ips": ["198.18.0.254", "198.19.0.254"], "udp": {"53": {"service": "dns"}}},
}
PROBED = (53, 69, 137, 500, 5060, 7)


def _verdicts(states: dict[str, dict[int, str]], ips: list[str]) -> dict[tuple[str, str], tuple[str, str]]:
    return {(g.host, g.where): (g.expected, g.verdict) for g in udp_state_grades(TRUTH, states, PROBED, ips)}


def test_each_port_is_expected_open_filtered_silent_or_closed_and_graded_so() -> None:
    states = {"198.18.0.231": {69: "open", 137: "open|filtered", 500: "open|filtered", 5060: "closed", 7: "closed"}}
    got = _verdicts(states, ["198.18.0.231"])
    assert got == {
        ("s2", "udp/53"): ("closed", UNKNOWN),  # not reported at all
        ("s2", "udp/69"): ("open", OK),
        ("s2", "udp/137"): ("open", UNCONFIRMED),  # the NetBIOS responder listens there
        ("s2", "udp/500"): ("open|filtered", OK),  # dropped: silence is the right answer
        ("s2", "udp/5060"): ("filtered", WRONG),
        ("s2", "udp/7"): ("closed", OK),
    }


def test_the_router_is_graded_once_whichever_address_was_scanned_and_other_hosts_not_at_all() -> None:
    got = _verdicts({"198.19.0.254": {53: "open", 7: "open"}}, ["198.19.0.254"])
    assert {host for host, _ in got} == {"router"} and len(got) == len(PROBED)
    assert got[("router", "udp/53")] == ("open", OK) and got[("router", "udp/7")] == ("closed", WRONG)
    assert len(_verdicts({}, ["198.19.0.254", "198.18.0.254"])) == len(PROBED)
