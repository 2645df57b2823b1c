"""Each probe module against real daemons' recorded answers, and against truncated, random and
hostile bytes, which must give None or a sane ServiceInfo and never raise."""

from __future__ import annotations

import random
import struct
import time
from pathlib import Path
from types import ModuleType

import pytest

from netscand.profiling.services import ServiceInfo
from netscand.profiling.services.base import BANNER_MAX, cpe, printable
from netscand.profiling.services.probes import (
    ALL,
    dns,
    ftp,
    http,
    imap,
    mqtt,
    mysql,
    pop3,
    postgresql,
    rdp,
    redis,
    smb,
    smtp,
    ssh,
    telnet,
    tls,
    vnc,
)

RECORDED = Path(__file__).parent / "recorded"
VNC_BANNER = b"RFB 003.008\n"  # not captured: RFC 6143 section 7.1.1's ProtocolVersion


def recorded(stem: str) -> bytes:
    return (RECORDED / f"{stem}.bin").read_bytes()


# fixture -> (probe, service, product, version, cpe); see recorded/README.md for the packages.
EXPECTED: dict[str, tuple[ModuleType, str, str | None, str | None, str | None]] = {
    "ssh-openssh": (ssh, "ssh", "OpenSSH", "9.2p1", "cpe:2.3:a:openbsd:openssh:9.2:p1:*:*:*:*:*:*"),
    "http-nginx": (http, "http", "nginx", "1.22.1", "cpe:2.3:a:f5:nginx:1.22.1:*:*:*:*:*:*:*"),
    "https-nginx": (http, "http", "nginx", "1.22.1", "cpe:2.3:a:f5:nginx:1.22.1:*:*:*:*:*:*:*"),
    "http-plain-to-nginx-tls-port": (http, "http", "nginx", "1.22.1", "cpe:2.3:a:f5:nginx:1.22.1:*:*:*:*:*:*:*"),
    "tls-nginx-serverhello": (tls, "tls", None, None, None),
    "ftp-vsftpd": (ftp, "ftp", "vsftpd", "3.0.3", "cpe:2.3:a:beasts:vsftpd:3.0.3:*:*:*:*:*:*:*"),
    "ftp-vsftpd-oops": (ftp, "ftp", "vsftpd", None, "cpe:2.3:a:beasts:vsftpd:*:*:*:*:*:*:*:*"),
    "smtp-exim4": (smtp, "smtp", "Exim", "4.96", "cpe:2.3:a:exim:exim:4.96:*:*:*:*:*:*:*"),
    "pop3-dovecot": (pop3, "pop3", "Dovecot", None, "cpe:2.3:a:dovecot:dovecot:*:*:*:*:*:*:*:*"),
    "imap-dovecot": (imap, "imap", "Dovecot", None, "cpe:2.3:a:dovecot:dovecot:*:*:*:*:*:*:*:*"),
    "dns-dnsmasq": (dns, "dns", "dnsmasq", "2.90", "cpe:2.3:a:thekelleys:dnsmasq:2.90:*:*:*:*:*:*:*"),
    "redis": (redis, "redis", "Redis", "7.0.15", "cpe:2.3:a:redis:redis:7.0.15:*:*:*:*:*:*:*"),
    "mysql-mariadb": (mysql, "mysql", "MariaDB", "10.11.19", "cpe:2.3:a:mariadb:mariadb:10.11.19:*:*:*:*:*:*:*"),
    "postgresql": (postgresql, "postgresql", "PostgreSQL", None, "cpe:2.3:a:postgresql:postgresql:*:*:*:*:*:*:*:*"),
    "mqtt-mosquitto": (mqtt, "mqtt", "Mosquitto", "2.0.11", "cpe:2.3:a:eclipse:mosquitto:2.0.11:*:*:*:*:*:*:*"),
    "telnet-inetutils": (telnet, "telnet", None, None, None),
    "smb-samba": (smb, "smb", None, None, None),
    "rdp-xrdp": (rdp, "rdp", None, None, None),
}
SAMPLES = [recorded(stem) for stem in EXPECTED] + [VNC_BANNER]


def check(result: object) -> None:
    """What any parse may return: None, or a ServiceInfo whose fields are bounded, typed text."""
    if result is None:
        return
    assert isinstance(result, ServiceInfo)
    assert result.service and result.service.islower()
    for value in (result.product, result.version, result.cpe):
        assert value is None or (isinstance(value, str) and len(value) < 256)
    assert result.banner is None or (isinstance(result.banner, str) and len(result.banner) <= BANNER_MAX)
    assert isinstance(result.extra, dict)


@pytest.mark.parametrize("stem", EXPECTED)
def test_recorded_response_is_recognised(stem: str) -> None:
    probe, service, product, version, name_cpe = EXPECTED[stem]
    info = probe.parse(recorded(stem))
    assert info is not None
    assert (info.service, info.product, info.version, info.cpe) == (service, product, version, name_cpe)
    check(info)


def test_recorded_extras() -> None:
    assert ssh.parse(recorded("ssh-openssh")).extra == {"protocol": "2.0", "os_hint": "Debian"}  # type: ignore[union-attr]
    page = http.parse(recorded("http-nginx"))
    assert page is not None and page.extra["title"] == "Welcome to nginx!" and page.extra["status"] == 200
    wrong_port = http.parse(recorded("http-plain-to-nginx-tls-port"))
    assert wrong_port is not None and wrong_port.extra["tls_required"] is True
    assert mqtt.parse(recorded("mqtt-mosquitto")).extra["connack"] == 0  # type: ignore[union-attr]
    assert smb.parse(recorded("smb-samba")).extra == {"dialect": "3.0.2"}  # type: ignore[union-attr]
    assert rdp.parse(recorded("rdp-xrdp")).extra == {"protocol": "tls"}  # type: ignore[union-attr]
    assert vnc.parse(VNC_BANNER) == ServiceInfo("vnc", banner="RFB 003.008", extra={"protocol": "3.8"})
    assert mysql.parse(recorded("mysql-mariadb")).extra["os_hint"] == "Debian"  # type: ignore[union-attr]


def test_certificate_fields() -> None:
    fields = tls.certificate_fields((RECORDED / "https-nginx-cert.der").read_bytes())
    assert fields["subject"] == fields["issuer"] == "O=netscand,CN=netscand-test"
    assert fields["not_after"].startswith("20")
    assert tls.certificate_fields(b"\x30\x82\xff\xff" + b"\0" * 64) == {}
    assert tls.certificate_fields(None) == {}


def test_each_probe_claims_only_its_own_recording() -> None:
    owners = {stem: probe for stem, (probe, *_) in EXPECTED.items()}
    for stem, probe in owners.items():
        for other in ALL:
            if other is not probe and other.parse(recorded(stem)) is not None:
                pytest.fail(f"{other.name} claims {stem}")


@pytest.mark.parametrize("probe", ALL, ids=lambda p: p.name)
def test_every_prefix_of_every_recording(probe: ModuleType) -> None:
    for sample in SAMPLES:
        for length in range(len(sample) + 1):
            check(probe.parse(sample[:length]))


@pytest.mark.parametrize("probe", ALL, ids=lambda p: p.name)
def test_seeded_garbage(probe: ModuleType) -> None:
    rng = random.Random(f"garbage-{probe.name}")
    for _ in range(2000):
        check(probe.parse(rng.randbytes(rng.randrange(0, 600))))
    for sample in SAMPLES:  # mutated recordings reach deeper into each parser than pure noise
        for _ in range(200):
            mutated = bytearray(sample)
            for _ in range(rng.randrange(1, 8)):
                if mutated:
                    mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            check(probe.parse(bytes(mutated)))


MEGABYTE = 1024 * 1024
HOSTILE = [
    b"",
    b"\0" * 4096,
    b"\xff" * 4096,
    b"SSH-2.0-" + b"A" * MEGABYTE + b"\r\n",
    b"SSH-2.0-OpenSSH_\xff\xfe\xfd Debian\r\n",
    b"HTTP/1.1 200 OK\r\nServer: " + b"x" * MEGABYTE + b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\n<title>" + b"\xc3\x28" * MEGABYTE,
    b"220 " + b"ESMTP Exim " * 100_000 + b"\r\n",
    b"+OK " + b"\n" * MEGABYTE,
    b"\xff\xff\xff\x00\x0a" + b"9" * MEGABYTE,  # MySQL: the largest length
    b"\x05\x00\x00\x00\x0a5.5.5-\0",
    b"\xff\xff\x6e\x73\x80\x00\x00\x01\x00\x01" + b"\0" * 32,  # DNS: length beyond the data
    b"\x00\x20\x6e\x73\x84\x80\xff\xff\xff\xff\x00\x00\x00\x00\xc0\x0c" + b"\xc0\x0c" * 8,  # pointer loop
    b"\x00\x30\x6e\x73\x84\x80\x00\x00\x00\x40\x00\x00\x00\x00" + b"\x3f" * 48,  # labels past the end
    b"R\xff\xff\xff\xff" + b"\0" * 16,  # PostgreSQL: huge message length
    b"E\x00\x00\x00\x09SFATAL",
    b"\x20\xff\xff\xff\xff\xff\x02\x00\x00",  # MQTT: over-long varint
    b"\x20\x02\x00\x00\x30\xff\xff\xff\x7f" + b"\0" * 64,
    b"\x20\x02\x00\x00\x30\x10\xff\xff$SYS/broker/ver",
    b"\x03\x00\xff\xff\x0e\xd0" + b"\0" * 9,  # RDP: length beyond the data
    b"\x00\xff\xff\xff\xfeSMB" + b"\0" * 60,  # SMB: header cut short
    b"\xff\xfa" + b"\x18" * MEGABYTE,  # telnet: subnegotiation that never ends
    b"\xff\xfb" * (MEGABYTE // 2),
    b"RFB 999.999\n",
    b"\x16\x03\x03" + b"\xff" * 10,
    b"$-1\r\nredis_version:\xff\xfe\r\n",
    b"$10\r\nredis_version:" + b"9" * MEGABYTE,
]


@pytest.mark.parametrize("probe", ALL, ids=lambda p: p.name)
def test_hostile_inputs(probe: ModuleType) -> None:
    for data in HOSTILE:
        started = time.monotonic()
        check(probe.parse(data))
        assert time.monotonic() - started < 2.0, f"{probe.name} is slow on {data[:24]!r}"


def test_hostile_inputs_still_named_where_the_service_is_clear() -> None:
    long_ssh = ssh.parse(b"SSH-2.0-" + b"A" * MEGABYTE + b"\r\n")
    assert long_ssh is None or len(long_ssh.version or "") <= 64


def sent(probe: ModuleType) -> bytes:
    payload = probe.payload
    assert isinstance(payload, bytes)
    return payload


def test_payloads_are_what_the_protocols_expect() -> None:
    assert struct.unpack("!H", sent(dns)[:2])[0] == len(sent(dns)) - 2
    assert struct.unpack("!I", sent(postgresql)[:4])[0] == len(sent(postgresql))
    assert struct.unpack("!H", sent(rdp)[2:4])[0] == len(sent(rdp))
    assert int.from_bytes(sent(smb)[1:4], "big") == len(sent(smb)) - 4
    assert tls.parse(sent(tls)) is not None  # a ClientHello is a TLS handshake record


def test_cpe_escapes_what_the_format_reserves() -> None:
    assert cpe("a", "b", "1.0") == "cpe:2.3:a:a:b:1.0:*:*:*:*:*:*:*"
    assert cpe("a", "b", "2:1+x*") == "cpe:2.3:a:a:b:2\\:1\\+x\\*:*:*:*:*:*:*:*"
    assert cpe("a", "b", None) == "cpe:2.3:a:a:b:*:*:*:*:*:*:*:*"


def test_printable_banner() -> None:
    assert printable(b"\x00hello\x07\r\nworld\r\n") == ".hello.\nworld"
    assert printable(b"") is None
    assert len(printable(b"x" * 10_000) or "") == BANNER_MAX
