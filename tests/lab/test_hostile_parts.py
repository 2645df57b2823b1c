"""The hostile hosts' plan, frames and answers as pure functions: no root, no namespaces."""

from __future__ import annotations

import ipaddress
import random
import re

import dpkt
import pytest

from netscand.lab import answers, frames, hostile, namespaces, truth
from netscand.profiling.names import mdns, netbios, snmp


@pytest.mark.parametrize("hosts", [1, 8, truth.MAX_HOSTS])
def test_hostile_hosts_take_addresses_no_other_host_uses(hosts: int) -> None:
    plan = truth.plan("nsd", hosts, 1, 0, 0, with_servers=True, with_hostile=True)
    found = plan["hosts"]
    bad = [h for h in found if hostile.is_hostile(h)]
    assert [h["role"] for h in bad] == ["tarpit", "services"]
    everyone = [*found, {"ip": plan["scanner"]["ip"], "mac": plan["scanner"]["mac"]}]
    assert len({h["ip"] for h in everyone} | set(plan["router"]["ips"])) == len(everyone) + 2
    assert len({h["mac"] for h in everyone}) == len(everyone)
    suffix = re.compile(rf"^nsd-{namespaces.SUFFIX_RE}$")
    for host in bad:
        assert ipaddress.ip_address(host["ip"]) in ipaddress.ip_network(truth.SCAN_NET) and not host["routed"]
        assert suffix.match(host["netns"]) and "services" not in host  # graded by hand, not by grade()
    assert bad[0]["tarpit"] and bad[0]["open"] == [] and bad[1]["open"] == [21, 25, 53, 80, 443, 8443]
    assert not any(hostile.is_hostile(h) for h in truth.plan("nsd", hosts, 1, 0, 0, with_servers=True)["hosts"])


TARGET = frames.Target.of("02:6e:73:00:00:01", "198.18.0.1", hostile.MACS[0], "198.18.0.220",
                          ["198.18.0.10", "198.19.0.10"])


@pytest.mark.parametrize("kind", list(frames.KINDS))
def test_every_frame_kind_is_a_frame_for_the_scanner(kind: str) -> None:
    rng = random.Random(kind)
    for _ in range(200):
        frame = frames.KINDS[kind](TARGET, rng)
        assert 14 <= len(frame) <= frames.FRAME_MAX
        assert frame[:6] == TARGET.scanner_mac and frame[6:12] == TARGET.own_mac


def test_the_regression_frame_is_issue_9s() -> None:
    frame = frames.icmp_ihl15_one_byte(TARGET, random.Random(1))
    assert len(frame) == 14 + 60 + 1 and frame[14] == 0x4F and frame[23] == 1
    assert frame[34:74] == b"\x01" * 40 and frame[74:] == b"\x03"


def test_echo_answers_only_a_syn_to_the_attacker_and_acknowledges_it() -> None:
    me, it = TARGET.scanner_ip, TARGET.own_ip
    syn = frames.tcp(me, it, frames.PORT_LO, 80, 1000, 0, frames.SYN)
    frame = b"\0" * 12 + b"\x08\x00" + frames.ipv4(me, it, 6, syn)
    echo = frames.echo_synack(TARGET, random.Random(1), frame)
    assert echo is not None and echo[34:38] == bytes.fromhex("0050") + frames.PORT_LO.to_bytes(2, "big")
    assert int.from_bytes(echo[42:46], "big") == 1001 and echo[46] >> 4 == 15 and len(echo) < 14 + 20 + 60
    ack = frames.tcp(me, it, frames.PORT_LO, 80, 1000, 0, frames.ACK)
    assert frames.echo_synack(TARGET, random.Random(1), b"\0" * 12 + b"\x08\x00" + frames.ipv4(me, it, 6, ack)) is None


def test_the_pointer_chain_is_all_backward_hops() -> None:
    message = dpkt.dns.DNS(answers.pointer_chain(7, answers.PTR, size=4000))  # dpkt refuses forward pointers
    assert message.id == 7 and len(message.an) > 100 and message.an[-1].ptrname == "x"
    assert len(answers.pointer_chain(7, answers.PTR)) == answers.UDP_MAX


@pytest.mark.parametrize("query, build", [(mdns, answers.mdns_answers), (netbios, answers.netbios_answers),
                                          (snmp, answers.snmp_answers)], ids=["mdns", "netbios", "snmp"])
def test_answers_carry_the_querys_id(query, build) -> None:
    request = query.request("198.18.0.221", 0x1234)
    replies = build(request)
    assert len(replies) >= 6 and max(map(len, replies)) <= answers.UDP_MAX
    ident = answers.snmp_request_id(request) if query is snmp else b"\x12\x34"
    assert ident and all(ident in r[:40] for r in replies)
    assert build(b"\x30") == []  # nothing to answer


def test_the_scanners_answers_to_forged_frames_do_not_keep_the_attack_going() -> None:
    me, it = TARGET.scanner_ip, TARGET.own_ip
    eth = b"\0" * 12 + b"\x08\x00"
    rst = frames.ipv4(me, it, 6, frames.tcp(me, it, frames.PORT_LO, 80, 0, 0, frames.RST | frames.ACK))
    syn = frames.ipv4(me, it, 6, frames.tcp(me, it, frames.PORT_LO, 80, 0, 0, frames.SYN))
    unreachable = frames.ipv4(me, it, 1, frames.icmp(3, 3, b"\0" * 28))
    echo = frames.ipv4(me, it, 1, frames.icmp(8, 0, b""))
    talking = [frames.is_scanner_talking(eth + p) for p in (rst, syn, unreachable, echo)]
    assert talking == [False, True, False, True]
    assert frames.is_scanner_talking(b"\0" * 12 + b"\x08\x06" + b"\0" * 28)  # its ARP sweep
