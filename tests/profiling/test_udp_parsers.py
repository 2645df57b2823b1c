"""The UDP service probes' parsers: real daemons' recorded answers (tests/profiling/udp/capture.py),
answers built by the protocols' specifications where the lab runs no such daemon, and property
tests: any bytes, with any id, give a ServiceInfo or None, never an exception, at a cost bounded
by the bytes received whatever lengths they claim."""

from __future__ import annotations

import struct
import time
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netscand.profiling.services import upnp
from netscand.profiling.services.base import ServiceInfo
from netscand.profiling.services.probes import http
from netscand.profiling.udp import PROBES, dns, memcached, ntp, rpcbind, sip, ssdp, tftp
from netscand.profiling.udp.detect import probes_for
from tests.profiling.services.test_service_probes import check

RECORDED = Path(__file__).parent / "udp" / "recorded"
IDENT = 0x1234  # the id capture.py asked with
SAMPLES = {p.stem: p.read_bytes() for p in sorted(RECORDED.glob("*.bin"))}
fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def control_answer(variables: bytes, sequence: int = IDENT, op: int = 0x82) -> bytes:
    """An NTP mode 6 READVAR response (RFC 9327 section 2.1) carrying `variables`."""
    return struct.pack("!BBHHHHH", 0x16, op, sequence, 0x0618, 0, 0, len(variables)) + variables


SIP_ANSWER = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP nm;branch=z9hG4bK1234;rport=5060\r\n"
              b"From: <sip:nm@nm>;tag=1234\r\nTo: <sip:nm@198.18.0.9>;tag=as1\r\nCall-ID: 1234@nm\r\n"
              b"CSeq: 42 OPTIONS\r\nServer: Asterisk PBX 18.10.0~dfsg+~cs6.10.40431411-2\r\n"
              b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\nContent-Length: 0\r\n\r\n")
RPC_ACCEPTED = struct.pack("!6I", IDENT, 1, 0, 0, 0, 0)  # xid, REPLY, accepted, AUTH_NONE, SUCCESS


@pytest.mark.parametrize(("probe", "data", "expected"), [
    (dns, SAMPLES["dns-dnsmasq"],
     ServiceInfo("dns", "dnsmasq", "2.90", "cpe:2.3:a:thekelleys:dnsmasq:2.90:*:*:*:*:*:*:*")),
    (memcached, SAMPLES["memcached"],
     ServiceInfo("memcached", "memcached", "1.6.18", "cpe:2.3:a:memcached:memcached:1.6.18:*:*:*:*:*:*:*")),
    (ssdp, SAMPLES["ssdp-miniupnpd"],
     ServiceInfo("ssdp", "MiniUPnPd", "2.3.1", "cpe:2.3:a:miniupnp_project:miniupnpd:2.3.1:*:*:*:*:*:*:*")),
    (ntp, SAMPLES["ntp-ntpsec-mode4"], ServiceInfo("ntp")),
    (tftp, SAMPLES["tftp-hpa-error"], ServiceInfo("tftp")),
    (ntp, control_answer(b'version="ntpd ntpsec-1.2.2 2023-06-07T07:10:07Z", processor="x86_64"'),
     ServiceInfo("ntp", "ntpsec", "1.2.2", "cpe:2.3:a:ntpsec:ntpsec:1.2.2:*:*:*:*:*:*:*")),
    (ntp, control_answer(b'version="ntpd 4.2.8p15@1.3728-o Wed Sep 23 11:46:38 UTC 2020 (1)",\r\n'
                         b'processor="x86_64", system="Linux/5.10.0-28-amd64", leap=0'),
     ServiceInfo("ntp", "ntpd", "4.2.8p15", "cpe:2.3:a:ntp:ntp:4.2.8:p15:*:*:*:*:*:*")),
    (sip, SIP_ANSWER, ServiceInfo("sip", "Asterisk", "18.10.0~dfsg+~cs6.10.40431411-2",
                                  "cpe:2.3:a:digium:asterisk:18.10.0\\~dfsg\\+\\~cs6.10.40431411-2:*:*:*:*:*:*:*")),
    (rpcbind, RPC_ACCEPTED, ServiceInfo("rpcbind")),
])
def test_answers_are_recognised(probe: ModuleType, data: bytes, expected: ServiceInfo) -> None:
    info = probe.parse(data, IDENT)
    assert info is not None
    assert (info.service, info.product, info.version, info.cpe) == (
        expected.service, expected.product, expected.version, expected.cpe)
    check(info)


def test_what_the_answers_say_besides() -> None:
    assert dns.parse(SAMPLES["dns-dnsmasq"], IDENT).extra["version_bind"] == "dnsmasq-2.90"  # type: ignore[union-attr]
    assert tftp.parse(SAMPLES["tftp-hpa-error"], IDENT).extra == {"error": "File not found"}  # type: ignore[union-attr]
    found = ssdp.parse(SAMPLES["ssdp-miniupnpd"], IDENT)
    assert found is not None and found.extra["os_hint"] == "Debian" and found.extra["st"] == "upnp:rootdevice"
    classic = ntp.parse(control_answer(b'version="ntpd 4.2.8p15 Debian", system="Linux/5.10"'), IDENT)
    assert classic is not None and classic.extra == {"system": "Linux/5.10"}  # the OS hint reads system only
    assert classic.banner == "ntpd 4.2.8p15 Debian"
    assert ntp.parse(control_answer(b"", op=0xC2), IDENT) == ServiceInfo("ntp")  # an error still is NTP


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: p.name)
def test_an_answer_to_another_exchange_is_not_ours(probe: ModuleType) -> None:
    answers = {**{stem: data for stem, data in SAMPLES.items() if stem.startswith(probe.name)},
               "ntp-control": control_answer(b'version="ntpd ntpsec-1.2.2"'), "sip": SIP_ANSWER, "rpcbind": RPC_ACCEPTED}
    # SSDP and TFTP answers carry nothing of ours: their exchange's own socket is what tells.
    for stem, data in answers.items():
        if stem.startswith(probe.name) and probe.name not in ("ssdp", "tftp"):
            assert probe.parse(data, IDENT + 1) is None, stem


def test_each_probe_claims_only_its_own_answers() -> None:
    owners = {"dns-dnsmasq": dns, "memcached": memcached, "ssdp-miniupnpd": ssdp, "ntp-ntpsec-mode4": ntp,
              "tftp-hpa-error": tftp}
    for stem, owner in owners.items():
        for other in PROBES:
            assert other is owner or other.parse(SAMPLES[stem], IDENT) is None, f"{other.name} claims {stem}"


@pytest.mark.parametrize(("server", "expected"), [
    ("Debian/12 UPnP/1.1 MiniUPnPd/2.3.1", ("MiniUPnPd", "2.3.1", "cpe:2.3:a:miniupnp_project:miniupnpd:2.3.1:*:*:*:*:*:*:*")),
    ("Linux/3.14 UPnP/1.0 Portable SDK for UPnP devices/1.6.19",
     ("libupnp", "1.6.19", "cpe:2.3:a:libupnp_project:libupnp:1.6.19:*:*:*:*:*:*:*")),
    ("Linux UPnP/1.0 Sonos/70.3-35220 (ZPS1)", ("Sonos", "70.3-35220", None)),
    ("Linux UPnP/1.0 \x1b[31m/1", (None, "1", None)),
    ("nginx/1.22.1", None),
    ("Linux UPnP/1.0", None),
])
def test_upnp_server_strings(server: str, expected: tuple[str | None, ...] | None) -> None:
    assert upnp.server_product(server) == expected


def test_a_upnp_devices_http_server_is_named_by_its_product() -> None:
    page = b"HTTP/1.1 404 Not Found\r\nServer: Debian/6.1.0 UPnP/1.1 MiniUPnPd/2.3.1\r\n\r\n"
    found = http.parse(page)
    assert found is not None and (found.product, found.version) == ("MiniUPnPd", "2.3.1")


def test_requests_carry_the_id() -> None:
    for probe in PROBES:
        datagrams = probe.requests("198.18.0.9", IDENT)
        assert datagrams and all(0 < len(d) <= 512 for d in datagrams)
    assert dns.requests("x", IDENT)[0][:2] == b"\x12\x34"
    assert memcached.requests("x", IDENT)[0] == b"\x12\x34\0\0\0\x01\0\0version\r\n"
    control, client = ntp.requests("x", IDENT)
    assert control == b"\x16\x02\x12\x34" + bytes(8) and len(client) == 48 and client[0] & 7 == 3


def test_which_probes_a_port_gets() -> None:
    assert probes_for(53, answered=False) == (dns,) and probes_for(69, answered=True) == (tftp,)
    assert probes_for(40000, answered=False) == ()  # silence proves nothing: not asked
    assert probes_for(40000, answered=True) == PROBES  # it answered something: every probe may name it


# --- any bytes never raise; claimed lengths cost nothing ---

@pytest.mark.parametrize("probe", PROBES, ids=lambda p: p.name)
@fuzz
@given(data=st.binary(max_size=2048), ident=st.integers(1, 0xFFFF))
def test_any_bytes(probe: ModuleType, data: bytes, ident: int) -> None:
    check(probe.parse(data, ident))


def _mutated(sample: bytes) -> st.SearchStrategy[bytes]:
    return st.lists(st.tuples(st.integers(0, max(len(sample) - 1, 0)), st.integers(0, 255)), max_size=8).map(
        lambda changes: bytes(_apply(bytearray(sample), changes)))


def _apply(data: bytearray, changes: list[tuple[int, int]]) -> bytearray:
    for index, value in changes:
        if index < len(data):
            data[index] = value
    return data


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: p.name)
@fuzz
@given(data=st.data())
def test_answers_gone_wrong(probe: ModuleType, data: st.DataObject) -> None:
    samples = [*SAMPLES.values(), control_answer(b'version="ntpd ntpsec-1.2.2"'), SIP_ANSWER, RPC_ACCEPTED]
    sample = data.draw(st.sampled_from(samples))
    cut = data.draw(st.integers(0, len(sample)))
    check(probe.parse(data.draw(_mutated(sample))[:cut] + data.draw(st.binary(max_size=64)), IDENT))


HUGE = {
    "ntp count 65535": struct.pack("!BBHHHHH", 0x16, 0x82, IDENT, 0, 0, 0, 0xFFFF) + b'version="' + b"9" * 65000,
    "memcached endless version": struct.pack("!HHHH", IDENT, 0, 1, 0) + b"VERSION " + b"1" * 65000,
    "ssdp headers": b"HTTP/1.1 200 OK\r\n" + b"SERVER: a UPnP/1.0 " + b"x/1 " * 16000 + b"\r\n",
    "ssdp many lines": b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 10000,
    "sip long server": SIP_ANSWER.replace(b"Asterisk PBX", b"A" * 60000),
    "tftp long error": b"\0\x05\0\x01" + b"\xff" * 65000 + b"\0",
    "dns pointer chain": struct.pack("!6H", IDENT, 0x8400, 1, 0xFFFF, 0, 0) + b"\xc0\x0c" * 32000,
}


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: p.name)
def test_large_datagrams_parse_fast(probe: ModuleType) -> None:
    for what, data in HUGE.items():
        started = time.thread_time()
        check(probe.parse(data, IDENT))
        assert time.thread_time() - started < 0.1, f"{probe.name} is slow on {what}"
