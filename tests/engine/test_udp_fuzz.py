"""The UDP probe's answer() is total: any bytes give None or an Answer within the plan, never an
exception. Random bytes rarely get past the addressing checks, so the strategies also build
datagrams addressed as replies (from a plan host and port, to our source ports) with payloads
that are random, or a genuine reply mutated and cut, and ICMP errors with mutated quotes."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netscand.engine import frames
from netscand.engine.clock import TICK_MASK
from netscand.engine.probes import Answer
from netscand.engine.shm import MALFORMED
from tests.engine.test_udp_probe import (
    HOSTS,
    PORTS,
    PROBE,
    REPLIES,
    back,
    icmp_error,
    sent,
)

FUZZ = settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_total(frame: bytes) -> None:
    got = PROBE.answer(frame)
    assert got is None or isinstance(got, Answer)
    if got is not None:
        assert 0 <= got.host < len(HOSTS) and 0 <= got.port < len(PORTS) and 0 <= got.tick <= TICK_MASK
    reason = frames.check(frame)
    assert 0 <= reason < len(MALFORMED)
    if reason == 0:
        frames.checksum_ok(frame)


@st.composite
def addressed(draw: st.DrawFn) -> bytes:
    """A datagram from a plan host and port to our source ports: random, or a genuine reply's
    payload with bytes changed, lengths rewritten and the end cut."""
    port = draw(st.sampled_from(PORTS))
    probe = sent(port, host=draw(st.integers(0, 1)), tick=draw(st.integers(0, TICK_MASK)))
    if draw(st.booleans()):
        data = bytearray(REPLIES[port](bytes(probe.data.data.data)))
        for _ in range(draw(st.integers(0, 4))):
            if data:
                data[draw(st.integers(0, len(data) - 1))] = draw(st.sampled_from([0, 0x7F, 0x80, 0x84, 0xFF]))
        data = data[: draw(st.integers(0, len(data)))]
    else:
        data = bytearray(draw(st.binary(max_size=300)))
    frame = bytearray(back(probe, bytes(data), sport=draw(st.sampled_from([port, 49731]))))
    if draw(st.booleans()):
        struct.pack_into("!H", frame, 38, draw(st.integers(0, 0xFFFF)))  # the UDP length
    if draw(st.booleans()):
        struct.pack_into("!H", frame, 16, draw(st.integers(0, 0xFFFF)))  # the IP total length
    return bytes(frame[: draw(st.integers(0, len(frame)))]) if draw(st.booleans()) else bytes(frame)


@st.composite
def quoting(draw: st.DrawFn) -> bytes:
    """An ICMP error quoting a probe, with its quote cut and its bytes changed."""
    probe = sent(draw(st.sampled_from(PORTS)), host=draw(st.integers(0, 1)))
    frame = bytearray(icmp_error(probe, draw(st.integers(0, 15)), quote=draw(st.integers(0, 60))))
    for _ in range(draw(st.integers(0, 3))):
        frame[draw(st.integers(14, len(frame) - 1))] = draw(st.integers(0, 255))
    return bytes(frame)


@st.composite
def nested_snmp(draw: st.DrawFn) -> bytes:
    """What the hostile lab's SNMP responder sends: deep nesting, lengths past the end."""
    depth = draw(st.integers(1, 2000))
    body = b"\x30\x84\xff\xff\xff\xff" * depth + draw(st.binary(max_size=20))
    return back(sent(161), body[:1400])


@FUZZ
@given(st.one_of(st.binary(max_size=300), addressed(), quoting(), nested_snmp()))
def test_no_frame_raises(frame: bytes) -> None:
    assert_total(frame)
