"""A real Worker, without root: a real Dispatcher hands it a SYN plan through a real shared
region, its sockets are Unix socket pairs (tests/engine/links.py), and the test plays the
segment: it reads the frames the worker sent and feeds back replies built from them (a SYN-ACK,
RSTs, an ICMP unreachable quoting the probe), a forged reply and malformed frames. The clock is
the test's (the `now` of each turn, and clock.now, which times a reply as it is matched), so
round-trip times and reply deadlines are exact."""

from __future__ import annotations

import errno
import os
from functools import partial

import dpkt
import pytest

from netscand.engine import bpf, clock, frames
from netscand.engine import plan as plans
from netscand.engine.guard import PlanGuard
from netscand.engine.probes import reply_clauses, tcp_syn
from netscand.engine.ranges import of_cidrs
from netscand.engine.shm import (
    MALFORMED,
    R_DONE,
    R_PORT,
    R_TALLY,
    S_CLOSED,
    S_OPEN,
    S_UNREACH,
    Result,
    Shared,
)
from netscand.engine.sockets import SNAPLEN, Rx, Tx
from netscand.engine.worker import Worker
from netscand.scan.dispatch import Dispatcher
from tests.engine.links import PairLink

SRC_MAC, HOST_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000010")
SRC_IP, H0, H1 = 0xC6120001, 0xC6120010, 0xC6120011
PORTS = (22, 80, 443)
GUARD = PlanGuard(of_cidrs(["198.18.0.0/15"]), (), 1000.0)
T0 = 1000.0  # the test's clock


def make_plan(slot: int, gen: int, retries: int = 0) -> plans.Plan:
    """Two hosts, three ports, shards of three probes: two shards, both this worker's."""
    return plans.Plan(gen=gen, kind=tcp_syn.PROBE.kind, slot=slot, share=1, retries=retries, key=b"r" * 16,
                      ifindex=1, src_ip=SRC_IP, src_mac=SRC_MAC, sport_base=61440 + (slot << 10), rate=1000.0,
                      timeout_init_ms=1000, timeout_min_ms=100, timeout_max_ms=3000, shard_size=3,
                      hosts=(H0, H1), macs=(HOST_MAC, HOST_MAC), ports=PORTS)


def reply(probe: bytes, flags: int = 0, unreachable: bool = False) -> bytes:
    """What a host would send back to one of the worker's probes."""
    sent = dpkt.ethernet.Ethernet(probe)
    ip, tcp = sent.data, sent.data.data
    if unreachable:  # quoting our IP header and the first 8 bytes of our TCP header
        l4 = dpkt.icmp.ICMP(type=3, code=3, data=dpkt.icmp.ICMP.Unreach(data=bytes(ip)[:28]))
        proto = 1
    else:
        l4 = dpkt.tcp.TCP(sport=tcp.dport, dport=tcp.sport, ack=tcp.seq + 1, flags=flags, win=29200, off=6,
                          opts=b"\x02\x04\x05\xb4")
        proto = 6
    back = dpkt.ip.IP(src=ip.dst, dst=ip.src, p=proto, ttl=61, data=l4)
    return bytes(dpkt.ethernet.Ethernet(src=sent.dst, dst=sent.src, data=back))


def by_target(sent: list[bytes]) -> dict[tuple[int, int], bytes]:
    out = {}
    for frame in sent:
        ip = dpkt.ethernet.Ethernet(frame).data
        out[int.from_bytes(ip.dst, "big"), ip.data.dport] = frame
    return out


class Rig:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, retries: int = 0, link: PairLink | None = None) -> None:
        self.time = T0  # what clock.now reads
        monkeypatch.setattr(clock, "now", lambda: self.time)
        self.link = link or PairLink()
        self.shared = Shared(1)
        self.worker = Worker(self.shared, 0, GUARD, lambda: GUARD, link=self.link)
        self.worker._beat(T0)  # its generation, before the dispatcher reads it
        self.dispatcher = Dispatcher(self.shared)
        self.results: list[Result] = []
        self.failures: list[str] = []
        self.sub = self.dispatcher.submit(partial(make_plan, retries=retries), self.results.append,
                                          self.failures.append)

    def step(self, now: float, times: int = 1) -> None:
        self.time = now
        for _ in range(times):
            self.worker.step(now)
        self.dispatcher.poll()


def test_replies_are_matched_timed_tallied_and_malformed_frames_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(monkeypatch)
    rig.step(T0, times=4)  # plan read, both shards started in turn and sent
    probes = by_target(rig.link.sent())
    assert sorted(probes) == sorted((h, p) for h in (H0, H1) for p in PORTS)
    # One filter, taking every plan slot's source ports.
    assert rig.link.programs == [bpf.reply_filter(reply_clauses(61440, 65535), SNAPLEN)]

    damaged = bytearray(reply(probes[H1, 22], flags=0x12))
    damaged[-5] ^= 0x01  # in the options, which no cookie covers: only the checksum tells
    forged = bytearray(reply(probes[H1, 22], flags=0x12))
    forged[14 + 20 + 8 : 14 + 20 + 12] = b"\0\0\0\1"  # acknowledges another sequence number
    for frame in (reply(probes[H0, 22], flags=0x12), reply(probes[H0, 80], flags=0x14),
                  reply(probes[H1, 80], flags=0x14), reply(probes[H1, 443], unreachable=True),
                  bytes(damaged), bytes(forged), b"\x00" * 7):
        rig.link.reply(frame)
    rig.step(T0 + 0.1)  # the replies come 100 ms after their probes

    worker = rig.worker
    assert worker.replies.matched == 4
    assert worker.plans[rig.sub.plan.slot].rtt.srtt == pytest.approx(0.1, abs=1 / 250)  # one 4 ms tick
    assert worker.replies.malformed[frames.TRUNCATED] == 1 and worker.replies.malformed[frames.BAD_CHECKSUM] == 1
    (opened,) = [r for r in rig.results if r.kind == R_PORT]  # open ports are told at once
    assert (opened.state, opened.ip, opened.port, opened.ttl) == (S_OPEN, H0, 22, 61)
    assert not rig.sub.done

    rig.step(T0 + 1.0 - 0.01)  # the first pass waits the initial timeout, 1 s, for late replies
    assert not rig.sub.done
    rig.step(T0 + 1.0)
    assert rig.sub.finished and len(worker.shards.free) == len(worker.shards.slots)
    tallies = {(r.ip, r.a, r.b) for r in rig.results if r.kind == R_TALLY}
    assert tallies == {(H0, 1, 0), (H1, 1, 1)}  # per host and shard: closed, filtered
    listed = {(r.ip, r.port, r.state) for r in rig.results if r.kind == R_PORT and r.state != S_OPEN}
    assert listed == {(H0, 80, S_CLOSED), (H1, 80, S_CLOSED), (H1, 443, S_UNREACH)}
    assert sorted(r.shard for r in rig.results if r.kind == R_DONE) == [0, 1]
    assert rig.failures == []

    worker._beat(T0 + 1.0)
    row = rig.shared.worker_row(0)
    assert (row.sent, row.matched) == (6, 4)
    counts = dict(zip(MALFORMED, rig.shared.malformed(0), strict=True))
    assert counts["truncated"] == 1 and counts["bad_checksum"] == 1


def test_an_unanswered_probe_is_sent_again_and_only_it(monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(monkeypatch, retries=1)
    rig.step(T0, times=4)
    probes = by_target(rig.link.sent())
    for (host, port), probe in probes.items():
        if (host, port) != (H1, 443):
            rig.link.reply(reply(probe, flags=0x14))
    rig.step(T0 + 0.05)
    rig.step(T0 + 1.0, times=2)  # timed out: the retry pass goes
    again = by_target(rig.link.sent())
    assert list(again) == [(H1, 443)]
    assert not rig.sub.finished
    # The retry waits what five replies at 50 ms measured (srtt + 4 rttvar = 82 ms), held to the
    # plan's minimum, 100 ms.
    rig.step(T0 + 1.0 + 0.09)
    assert not rig.sub.finished
    rig.step(T0 + 1.0 + 0.11)
    assert rig.sub.finished


def test_a_reply_to_a_probe_sent_after_the_turn_began_is_timed_when_matched(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fanout hands a worker replies to its peers' probes, which may have gone out after its
    turn began, in a later tick: timed by that turn's start, such a reply would read as one a
    whole tick wrap late (4.09 s), and push the timeout to its maximum."""
    rig = Rig(monkeypatch)
    rig.step(T0 + 0.01, times=4)  # the probes go out 10 ms (2 ticks) after the turn below begins
    probes = by_target(rig.link.sent())
    rig.link.reply(reply(probes[H0, 22], flags=0x12))
    rig.time = T0 + 0.05  # the reply is matched 40 ms after its probe went
    rig.worker.step(T0)
    assert rig.worker.replies.matched == 1
    assert rig.worker.plans[rig.sub.plan.slot].rtt.srtt == pytest.approx(0.04, abs=1 / 250)


class NoTransmitter(PairLink):
    def transmitter(self, ifindex: int, loopback: bool) -> Tx:
        raise OSError(errno.ENODEV, "No such device")


def test_an_interface_whose_transmitter_will_not_open_leaves_no_receiver_behind(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A receiver kept without its transmitter would stay in the fanout group, taking its share
    of the other workers' replies for nothing."""
    rig = Rig(monkeypatch, link=NoTransmitter())
    rig.step(T0)
    assert rig.worker.rx == {} and rig.link.programs == []
    reason = f"no raw socket on the interface ({os.strerror(errno.ENODEV)})"
    assert rig.failures == [f"the engine refused the plan: {reason}"]


class NoReceiver(PairLink):
    def receiver(self, ifindex: int, fanout_group: int, program: bytes) -> Rx:
        raise OSError(errno.ENODEV, "No such device")


def test_an_interface_whose_receiver_will_not_open_closes_its_transmitter(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(monkeypatch, link=NoReceiver())
    rig.step(T0)
    assert rig.worker.rx == {} and rig.link.tx_worker.fileno() == -1  # closed, not left to the GC
    assert len(rig.failures) == 1 and "no raw socket on the interface" in rig.failures[0]



def test_a_port_heard_filtered_then_open_is_reported_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreachable first, then the port's own answer: the open answer replaces the filtered
    state and is reported (the tally counts no open port, so it would otherwise vanish)."""
    rig = Rig(monkeypatch)
    rig.step(T0, times=4)
    probes = by_target(rig.link.sent())
    rig.link.reply(reply(probes[H1, 443], unreachable=True))
    rig.step(T0 + 0.05)
    rig.link.reply(reply(probes[H1, 443], flags=0x12))
    rig.step(T0 + 0.1)
    opened = [(r.ip, r.port) for r in rig.results if r.kind == R_PORT and r.state == S_OPEN]
    assert opened == [(H1, 443)]
    rig.step(T0 + 1.0)
    assert rig.sub.finished
    assert not [r for r in rig.results if r.kind == R_PORT and r.state == S_UNREACH]
