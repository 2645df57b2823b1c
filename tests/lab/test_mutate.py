"""Changing a running lab (netscand.lab.mutate) and its webhook receiver (netscand.lab.receiver),
each change proven by what a connection from the scanner's namespace meets. Needs root."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netscand.lab import Lab, LabError, mutate, receiver, resolver, truth
from netscand.lab.harness import lab_up

pytestmark = pytest.mark.lab

NSPROBE = Path(__file__).with_name("nsprobe.py")
PREFIX = "nsmu"  # a lab of this module's own: its changes must not reach other tests' labs
NEWER_SSH = "SSH-2.0-OpenSSH_9.7p1 Debian-5\r\n"
VENDOR_MAC = "00:1b:21:5e:00:10"  # Intel's OUI


@pytest.fixture(scope="module")
def lab(lab_lock: None) -> Iterator[Lab]:
    with lab_up(hosts=4, seed=1, prefix=PREFIX, servers=True) as built:
        yield built


def probe(lab: Lab, *targets: tuple[str, int]) -> dict[tuple[str, int], dict[str, Any]]:
    out = subprocess.run(["ip", "netns", "exec", lab.scanner_ns, sys.executable, str(NSPROBE), "tcp", "1",
                          *(f"{ip}:{port}" for ip, port in targets)],
                         check=True, capture_output=True, text=True, timeout=60)
    return {(r["target"].rsplit(":", 1)[0], int(r["target"].rsplit(":", 1)[1])): r for r in json.loads(out.stdout)}


def in_scanner(lab: Lab, code: str) -> str:
    out = subprocess.run(lab.scanner_argv([sys.executable, "-c", textwrap.dedent(code)]),
                         check=True, capture_output=True, text=True, timeout=60)
    return out.stdout


# A DNS query of the lab's own server from the scanner's namespace, by hand rather than through
# a resolver: nothing of the machine's (its resolv.conf, nscd, a cache) can answer it.
DNS_QUERY = """
import json, socket, struct

def name_at(msg, i):
    labels = []
    while msg[i]:
        if msg[i] >= 0xC0:  # a pointer to the rest of the name
            return ".".join([*labels, name_at(msg, (msg[i] & 0x3F) << 8 | msg[i + 1])[0]]), i + 2
        labels.append(msg[i + 1:i + 1 + msg[i]].decode())
        i += 1 + msg[i]
    return ".".join(labels), i + 1

def lookup(server, name, qtype):
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    query = struct.pack(">6H", 0x6E73, 0x0100, 1, 0, 0, 0) + labels + b"\\0" + struct.pack(">2H", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(query, (server, 53))
        msg = s.recv(4096)
    i, found = name_at(msg, 12)[1] + 4, []
    for _ in range(struct.unpack(">H", msg[6:8])[0]):
        i = name_at(msg, i)[1]
        rtype, _, _, size = struct.unpack(">HHIH", msg[i:i + 10])
        found.append(socket.inet_ntoa(msg[i + 10:i + 14]) if rtype == 1 else name_at(msg, i + 10)[0])
        i += 10 + size
    return found
"""


def dns(lab: Lab, name: str, qtype: int = 1) -> list[str]:
    """What the lab's DNS server answers for `name` (qtype 1: A, 12: PTR), asked from the scanner."""
    server = lab.truth["scanner"]["gateway"]
    return list(json.loads(in_scanner(lab, DNS_QUERY + f"print(json.dumps(lookup({server!r}, {name!r}, {qtype})))")))


def reverse(ip: str) -> str:
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"


def test_open_port_listens_with_its_banner_and_the_rest_still_serve(lab: Lab) -> None:
    h2 = mutate.host(lab, "h2")
    port = next(p for p in (8080, 8081, 8082) if p not in h2["open"] + h2["filtered"])
    assert probe(lab, (h2["ip"], port))[(h2["ip"], port)]["result"] == "refused"
    mutate.open_port(lab, "h2", port, "hello\r\n")
    assert port in truth.read(lab.state_file)["hosts"][1]["open"]
    every = [(h["ip"], p) for h in lab.truth["hosts"] if h["kind"] == "imitation" for p in h["open"]]
    seen = probe(lab, *every)
    assert all(r["result"] == "open" for r in seen.values()), seen
    assert seen[(h2["ip"], port)]["banner"] == "hello\r\n"


def test_swap_banner_announces_the_new_version(lab: Lab) -> None:
    h1 = mutate.host(lab, "h1")
    assert probe(lab, (h1["ip"], 22))[(h1["ip"], 22)]["banner"].startswith("SSH-2.0-OpenSSH_9.2p1")
    mutate.swap_banner(lab, "h1", 22, NEWER_SSH)
    assert probe(lab, (h1["ip"], 22))[(h1["ip"], 22)]["banner"] == NEWER_SSH
    assert truth.read(lab.state_file)["hosts"][0]["banners"]["22"] == NEWER_SSH


def test_stop_daemon_closes_its_ports_only(lab: Lab) -> None:
    s2 = mutate.host(lab, "s2")
    before = probe(lab, (s2["ip"], 21), (s2["ip"], 6379))
    assert before[(s2["ip"], 21)]["result"] == "open" and before[(s2["ip"], 6379)]["result"] == "open"
    mutate.stop_daemon(lab, "s2", "vsftpd")
    after = probe(lab, (s2["ip"], 21), (s2["ip"], 6379))
    assert after[(s2["ip"], 21)]["result"] == "refused" and after[(s2["ip"], 6379)]["result"] == "open"
    written = next(h for h in truth.read(lab.state_file)["hosts"] if h["name"] == "s2")
    assert written["open"] == [6379] and "21" not in written["services"] and "vsftpd" not in written["daemons"]
    with pytest.raises(LabError, match="runs no vsftpd"):
        mutate.stop_daemon(lab, "s2", "vsftpd")


@pytest.mark.parametrize(("name", "new_ip"), [("h3", "198.18.0.200"), ("h4", "198.19.0.200")])
def test_move_host_keeps_its_mac_and_ports_at_the_new_address(lab: Lab, name: str, new_ip: str) -> None:
    moving = mutate.host(lab, name)
    old_ip, mac, ports = moving["ip"], moving["mac"], list(moving["open"])
    fqdn = resolver.hostname(moving)
    assert all(r["result"] == "open" for r in probe(lab, *((old_ip, p) for p in ports)).values())
    assert dns(lab, fqdn) == [old_ip] and dns(lab, reverse(old_ip), 12) == [fqdn]
    mutate.move_host(lab, name, new_ip)
    # The lab's DNS moved the name with it: the name, and the new address's reverse name.
    assert dns(lab, fqdn) == [new_ip] and dns(lab, reverse(new_ip), 12) == [fqdn]
    assert dns(lab, reverse(old_ip), 12) == []
    assert all(r["result"] == "open" for r in probe(lab, *((new_ip, p) for p in ports)).values())
    assert probe(lab, (old_ip, ports[0]))[(old_ip, ports[0])]["result"] != "open"
    written = next(h for h in truth.read(lab.state_file)["hosts"] if h["name"] == name)
    assert (written["ip"], written["previous_ips"], written["mac"]) == (new_ip, [old_ip], mac)
    if not moving["routed"]:  # on the scanner's segment, the same MAC answers for the new address
        assert scanner_neighbours(lab, new_ip) == [mac]


def test_set_mac_answers_with_the_new_mac(lab: Lab) -> None:
    h1 = mutate.host(lab, "h1")
    assert mutate.lab_netns(lab, h1) == f"{PREFIX}-h1"
    mutate.set_mac(lab, "h1", VENDOR_MAC)
    assert probe(lab, (h1["ip"], 21))[(h1["ip"], 21)]["result"] == "open"
    assert scanner_neighbours(lab, h1["ip"]) == [VENDOR_MAC]
    assert truth.read(lab.state_file)["hosts"][0]["mac"] == VENDOR_MAC


def scanner_neighbours(lab: Lab, ip: str) -> list[str]:
    shown = subprocess.run(lab.scanner_argv(["ip", "-j", "neigh", "show", ip]), check=True, capture_output=True,
                           text=True).stdout
    return [n["lladdr"] for n in json.loads(shown)]


def test_receiver_fails_first_then_records_every_request(lab: Lab, tmp_path: Path) -> None:
    got = receiver.start(lab, "h1", 9000, 2, tmp_path / "received.jsonl")
    try:
        statuses = in_scanner(lab, f"""
            import urllib.error, urllib.request
            for i in range(3):
                req = urllib.request.Request("{got.url}/hook", data=b'{{"n": %d}}' % i,
                                             headers={{"webhook-id": "msg_%d" % i}})
                try:
                    print(urllib.request.urlopen(req, timeout=5).status)
                except urllib.error.HTTPError as exc:
                    print(exc.code)
        """)
        assert statuses.split() == ["500", "500", "200"]
        received = got.received()
        assert [r.status for r in received] == [500, 500, 200]
        assert [r.body for r in received] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
        assert [r.headers["webhook-id"] for r in received] == ["msg_0", "msg_1", "msg_2"]
        assert {(r.method, r.path) for r in received} == {("POST", "/hook")}
    finally:
        got.stop()


def test_receiver_reads_no_request_from_a_line_still_being_written(tmp_path: Path) -> None:
    record = tmp_path / "received.jsonl"
    line = json.dumps({"status": 500, "method": "POST", "path": "/hook", "headers": {"webhook-id": "msg_0"},
                       "body": ""})
    record.write_text(line + "\n" + line[:20])
    got = receiver.Receiver("http://198.18.0.10:9000", 0, record).received()
    assert [(r.status, r.headers) for r in got] == [(500, {"webhook-id": "msg_0"})]


def test_changes_are_refused_where_they_would_lie() -> None:
    planned = Lab(truth.plan("nsmu", 4, 1, 0, 0, with_servers=True))
    with pytest.raises(LabError, match="already a lab address"):
        mutate.move_host(planned, "h3", mutate.host(planned, "h1")["ip"])
    with pytest.raises(LabError, match="not an IPv4 address"):
        mutate.move_host(planned, "h3", "198.18.0.300")
    with pytest.raises(LabError, match="not a host address"):
        mutate.move_host(planned, "h3", "198.19.0.77")  # h3 is on the scanner's segment
    with pytest.raises(LabError, match="only imitation hosts"):
        mutate.open_port(planned, "s1", 8080)
    with pytest.raises(LabError, match="no open port"):
        mutate.swap_banner(planned, "h2", 22, NEWER_SSH)
    with pytest.raises(LabError, match="already a lab MAC"):
        mutate.set_mac(planned, "h1", mutate.host(planned, "s1")["mac"])
    with pytest.raises(LabError, match="bad MAC"):
        mutate.set_mac(planned, "h1", "00:1B:21:5E:00:10")
    with pytest.raises(LabError, match="multicast"):
        mutate.set_mac(planned, "h1", "01:1b:21:5e:00:10")
    with pytest.raises(LabError, match="no host"):
        mutate.host(planned, "h9")


@pytest.mark.parametrize("ns", [None, "", "nsmx-h1", "eth0", "nsmzz-h1"])
def test_no_change_is_made_outside_the_labs_own_namespaces(ns: str | None) -> None:
    """A truth whose netns is missing or foreign is refused before anything is changed: with
    netns None the change would be made to the root namespace's eth0, the machine's own."""
    planned = Lab(truth.plan("nsmz", 4, 1, 0, 0, with_servers=True))  # planned only: none exists
    for name in ("h1", "h3", "s2"):
        mutate.host(planned, name)["netns"] = ns
    with pytest.raises(LabError, match="is not one of lab 'nsmz'"):
        mutate.lab_netns(planned, mutate.host(planned, "h1"))
    with pytest.raises(LabError, match="is not one of lab 'nsmz'"):
        mutate.set_mac(planned, "h1", VENDOR_MAC)
    with pytest.raises(LabError, match="is not one of lab 'nsmz'"):
        mutate.move_host(planned, "h3", "198.18.0.200")
    with pytest.raises(LabError, match="is not one of lab 'nsmz'"):
        mutate.open_port(planned, "h1", 8080)
    with pytest.raises(LabError, match="is not one of lab 'nsmz'"):
        mutate.stop_daemon(planned, "s2", "vsftpd")
    with pytest.raises(LabError, match="is not one of lab 'nsmz'"):
        receiver.start(planned, "h1", 9000, 0, Path("/nonexistent/received.jsonl"))


def test_a_lab_namespace_that_does_not_exist_is_refused() -> None:
    planned = Lab(truth.plan("nsmz", 4, 1, 0, 0, with_servers=True))
    with pytest.raises(LabError, match="nsmz-h1 does not exist"):
        mutate.lab_netns(planned, mutate.host(planned, "h1"))
    with pytest.raises(LabError, match="nsmz-h1 does not exist"):
        mutate.set_mac(planned, "h1", VENDOR_MAC)
