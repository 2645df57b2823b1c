"""The hostile hosts do what the truth says they do, seen from the scanner's namespace. Needs root.

Clients run in this process: a socket made inside the scanner namespace (namespaces.inside)
keeps it. Frames are read through the engine's own receive filter, so what is counted here is
what reaches the engine's parsers.
"""

from __future__ import annotations

import random
import re
import select
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from netscand.engine import bpf, sockets
from netscand.engine.probes import reply_clauses
from netscand.lab import Lab, answers, frames, hostile, namespaces, procs
from netscand.lab.lab import teardown
from netscand.profiling.names import mdns, netbios, snmp
from netscand.profiling.services.probes import dns, tls

pytestmark = pytest.mark.lab
FANOUT_GROUP = 0x6E78  # not the daemon's: a capture of its own
SO_RCVBUFFORCE = 33


def role(lab: Lab, name: str) -> dict[str, Any]:
    return next(h for h in lab.truth["hosts"] if h.get("role") == name)


@contextmanager
def scanner(lab: Lab) -> Iterator[None]:
    with namespaces.inside(lab.scanner_ns):
        yield


def capture(lab: Lab, seconds: float, poke: tuple[str, int] | None = None,
            send: bytes | None = None) -> list[bytes]:
    """Frames that pass the engine's receive filter on the scanner's interface for `seconds`,
    after connecting to `poke` (which wakes the attacker) or sending the frame `send`."""
    with scanner(lab):
        ifindex = socket.if_nametoindex(lab.truth["scanner"]["ifname"])
        program = bpf.reply_filter(reply_clauses(frames.PORT_LO, frames.PORT_HI), sockets.SNAPLEN)
        rx = sockets.open_rx(ifindex, FANOUT_GROUP, program)
        held = socket.create_connection(poke, timeout=5) if poke else None
        if send is not None:
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as tx:
                tx.bind((lab.truth["scanner"]["ifname"], 0))
                tx.send(send)
    got: list[bytes] = []
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            select.select([rx], [], [], left)
            got += [f for batch in rx.batches(1024) for f in batch.all()]
    finally:
        rx.close()
        if held:
            held.close()
    return got


def test_tarpit_completes_a_handshake_on_every_port_tried(hostile_lab: Lab) -> None:
    tarpit = role(hostile_lab, "tarpit")
    ports = [1, 7, 22, 80, 443, 1023, 8080, 31337, 65535] + random.Random(9).sample(range(1, 65536), 200)
    held = []
    with scanner(hostile_lab):
        try:
            for port in ports:
                held.append(socket.create_connection((tarpit["ip"], port), timeout=2))
            held[0].settimeout(0.5)
            with pytest.raises(TimeoutError):
                held[0].recv(1)  # held in silence: no banner, no close
        finally:
            for sock in held:
                sock.close()
    assert len(held) == len(ports)


def is_regression(frame: bytes) -> bool:
    """Issue 9's frame: IPv4, IHL 15, ICMP, one byte of ICMP (a 3)."""
    return len(frame) == 75 and frame[12:14] == b"\x08\x00" and frame[14] == 0x4F and frame[23] == 1 and frame[74] == 3


def test_attacker_frames_pass_the_engines_receive_filter(hostile_lab: Lab) -> None:
    tarpit, services = role(hostile_lab, "tarpit"), role(hostile_lab, "services")
    got = capture(hostile_lab, 3.0, poke=(services["ip"], hostile.HTTP_PORT))  # any talk to a hostile host
    own = bytes.fromhex(tarpit["mac"].replace(":", ""))
    attack = [f for f in got if f[6:12] == own]
    # ~200 frames/s for 3 s; a third of that is plenty even on a busy machine.
    assert len(attack) >= hostile.FRAME_RATE, len(attack)
    ip = [f for f in attack if f[12:14] == b"\x08\x00" and len(f) > 23]
    arp = [f for f in attack if f[12:14] == b"\x08\x06"]
    tcp = [f for f in ip if f[23] == 6]
    icmp = [f for f in ip if f[23] == 1]
    assert any(map(is_regression, attack))
    assert any(len(f) < 42 for f in arp) and any(len(f) == sockets.SNAPLEN for f in arp)  # cut short, oversized
    assert any(f[14] & 0x0F < 5 for f in ip)  # IHL below the header's own size
    assert any(f[14] == 0x45 and len(f) >= 48 and f[46] >> 4 == 15 and len(f) < 14 + 20 + 60 for f in tcp)
    assert any(f[14] == 0x45 and f[34] == 3 and len(f) < 14 + 20 + 8 + 28 for f in icmp)  # quote cut short
    assert any(f[14] == 0x45 and f[34] == 3 and len(f) == 14 + 20 + 8 + 28 for f in icmp)  # a forged quote
    ports = {struct.unpack_from("!H", f, 14 + (f[14] & 0x0F) * 4 + 2)[0] for f in tcp if f[14] == 0x45}
    assert ports and all(frames.PORT_LO <= p <= frames.PORT_HI for p in ports)


def test_tarpit_echoes_a_syn_with_options_past_the_frame(hostile_lab: Lab) -> None:
    tarpit, scan = role(hostile_lab, "tarpit"), hostile_lab.truth["scanner"]
    me, it = frames.ip_bytes(scan["ip"]), frames.ip_bytes(tarpit["ip"])
    sport, seq = frames.PORT_LO + 7, 0x6E780000
    syn = frames.ipv4(me, it, 6, frames.tcp(me, it, sport, 80, seq, 0, frames.SYN))
    frame = bytes.fromhex(tarpit["mac"].replace(":", "") + scan["mac"].replace(":", "")) + b"\x08\x00" + syn
    got = capture(hostile_lab, 1.0, send=frame)
    # Only well-shaped IPv4/TCP frames: the attacker's own frames are in the capture too.
    replies = [f for f in got if len(f) >= 54 and f[12:15] == b"\x08\x00\x45" and f[23] == 6 and f[26:30] == it
               and struct.unpack_from("!HH", f, 34) == (80, sport)
               and struct.unpack_from("!I", f, 42)[0] == seq + 1]
    offsets = sorted(f[46] >> 4 for f in replies)
    assert len(replies) == 2 and offsets[0] <= 10 and offsets[1] == 15, offsets  # the kernel's, then the echo
    echo = next(f for f in replies if f[46] >> 4 == 15)
    assert len(echo) < 14 + 20 + 60  # the header claims more than the frame has


def test_drip_sends_one_byte_at_a_time(hostile_lab: Lab) -> None:
    services = role(hostile_lab, "services")
    with scanner(hostile_lab):
        sock = socket.create_connection((services["ip"], hostile.DRIP_PORT), timeout=5)
    with sock:
        sock.settimeout(0.2)
        arrivals: list[tuple[float, bytes]] = []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(64)
            except TimeoutError:
                continue
            assert chunk, "the drip must never close"
            arrivals.append((time.monotonic(), chunk))
    data = b"".join(chunk for _, chunk in arrivals)
    assert answers.DRIP_TEXT.startswith(data) and 5 <= len(data) <= 8, data
    gaps = [b[0] - a[0] for a, b in zip(arrivals, arrivals[1:])]
    assert all(len(chunk) == 1 for _, chunk in arrivals) and min(gaps) > hostile.DRIP_INTERVAL_S / 2, gaps


def test_endless_banner_never_ends(hostile_lab: Lab) -> None:
    services = role(hostile_lab, "services")
    with scanner(hostile_lab):
        sock = socket.create_connection((services["ip"], hostile.ENDLESS_PORT), timeout=5)
    with sock:
        first = sock.recv(4)
        total = len(first)
        while total < 8 << 20:
            chunk = sock.recv(1 << 20)
            assert chunk, "the banner must never end"
            total += len(chunk)
    assert first == b"220-"


def fetch(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request)
    data = bytearray()
    while chunk := sock.recv(1 << 16):
        data += chunk
    return bytes(data)


def test_http_page_has_a_64_kib_title_behind_many_fragments(hostile_lab: Lab) -> None:
    services = role(hostile_lab, "services")
    with scanner(hostile_lab):
        sock = socket.create_connection((services["ip"], hostile.HTTP_PORT), timeout=5)
    with sock:
        page = fetch(sock, b"GET / HTTP/1.0\r\n\r\n")
    head, _, body = page.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 ")
    assert body.count(b"<title") == answers.TITLE_FRAGMENTS + 1
    title = re.search(rb"<title>([^<]*)</title>", body)
    assert title and len(title.group(1)) == answers.TITLE_BYTES


def chain_bytes(lab: Lab, port: int) -> int:
    """Bytes a TLS 1.2 server sends before it waits for the client (its flight, chain included;
    in TLS 1.2 the chain goes in the clear, so it can be measured without accepting it)."""
    context = tls.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    with pytest.raises(ssl.SSLWantReadError):
        context.wrap_bio(incoming, outgoing).do_handshake()
    with scanner(lab):
        sock = socket.create_connection((role(lab, "services")["ip"], port), timeout=5)
    with sock:
        sock.sendall(outgoing.read())
        sock.settimeout(1.0)
        total = 0
        try:
            while chunk := sock.recv(1 << 16):
                total += len(chunk)
        except TimeoutError:
            pass
    return total


def test_tls_ports_send_a_big_and_a_huge_chain(hostile_lab: Lab) -> None:
    services = role(hostile_lab, "services")
    assert 80_000 < chain_bytes(hostile_lab, hostile.TLS_PORT) < 100 * 1024
    assert chain_bytes(hostile_lab, hostile.HUGE_TLS_PORT) > 900_000
    with scanner(hostile_lab):
        raw = socket.create_connection((services["ip"], hostile.TLS_PORT), timeout=5)
        huge = socket.create_connection((services["ip"], hostile.HUGE_TLS_PORT), timeout=5)
    with tls.client_context().wrap_socket(raw) as big:
        leaf = x509.load_der_x509_certificate(big.getpeercert(True) or b"")
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert len(names) >= 600 and len(leaf.subject) > 200
        assert fetch(big, b"GET / HTTP/1.0\r\n\r\n").count(b"<title") == answers.TITLE_FRAGMENTS + 1
    with pytest.raises(ssl.SSLError, match="EXCESSIVE_MESSAGE_SIZE"):
        tls.client_context().wrap_socket(huge)
    huge.close()
    shown = subprocess.run(hostile_lab.scanner_argv(["openssl", "s_client", "-connect", f"{services['ip']}:443",
                                                      "-showcerts"]),
                           input="", capture_output=True, text=True, timeout=30).stdout
    assert shown.count("-----BEGIN CERTIFICATE-----") == 10  # leaf, 8 intermediates, root


def test_tcp_dns_answers_a_pointer_loop_then_a_65535_byte_chain(hostile_lab: Lab) -> None:
    services = role(hostile_lab, "services")
    with scanner(hostile_lab):
        sock = socket.create_connection((services["ip"], hostile.DNS_PORT), timeout=5)
    with sock:
        data = fetch(sock, dns.payload)
    first = struct.unpack_from("!H", data)[0]
    loop, rest = data[2 : 2 + first], data[2 + first :]
    assert loop[:2] == dns.payload[2:4] and loop[12:14] == b"\xc0\x0c"  # our id; a name pointing at itself
    assert struct.unpack_from("!H", rest)[0] == answers.TCP_DNS_MAX == len(rest) - 2
    assert rest[2:4] == dns.payload[2:4]


@pytest.mark.parametrize("query", [mdns, netbios, snmp], ids=lambda q: q.source)
def test_udp_name_queries_get_every_hostile_answer(hostile_lab: Lab, query: Any) -> None:
    services = role(hostile_lab, "services")
    request = query.request(services["ip"], 0x6E78)
    expected = {hostile.MDNS_PORT: answers.mdns_answers, hostile.NETBIOS_PORT: answers.netbios_answers,
                hostile.SNMP_PORT: answers.snmp_answers}[query.port](request)
    with scanner(hostile_lab):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Two 64 KiB datagrams arrive as 90 fragments: the default buffer may hold one of them only.
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        sock.connect((services["ip"], query.port))
    got = []
    with sock:
        sock.send(request)
        sock.settimeout(1.0)
        try:
            while True:
                got.append(sock.recv(1 << 17))
        except TimeoutError:
            pass
    assert sorted(got) == sorted(expected) and len(expected) >= 6
    assert max(map(len, got)) >= answers.UDP_MAX - 64  # a datagram as big as UDP over IPv4 allows


def test_down_stops_the_hostile_helpers(lab_factory: Any) -> None:
    with lab_factory(hosts=1, hostile=True) as lab:
        helpers = procs.find_helpers(lab.state_file)
        names = {Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[2].decode() for pid in helpers}
        assert {"netscand.lab.hostile_services", "netscand.lab.attacker"} <= names
    assert procs.find_helpers(lab.state_file) == []
    assert not [n for n in namespaces.lab_namespaces(lab.prefix)]
    teardown(lab.prefix)  # idempotent
