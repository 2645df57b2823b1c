"""A stealth one-shot scan end to end, in a throwaway namespace (loopback only, as
test_scan_errors.py's): the real engine paces the host, and a capture on lo shows what the
target saw. Every port of the top 1000 is probed by a SYN shaped like the namespace's own
connect() SYN, from the source ports asked for, never two within the gap, in no sequential
order, and the scanner completes no handshake; the open port is found."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from netscand.scan.ports import top_ports

GAP_MS, JITTER_MS = 10, 4
SPORTS = (46000, 46999)  # no port of the top 1000 in it: a reply from one is never taken for a probe
OPEN = 22

# Runs in the namespace: listens on OPEN, records every TCP packet on lo with the kernel's
# receive time until told to stop (a line on stdin), then makes one connect() of its own to
# OPEN, whose SYN is the reference, and prints what it saw as JSON.
CAPTURE = r"""
import json, select, socket, struct, sys
SO_TIMESTAMPNS = 35  # Linux's; Python's socket module does not name it
listener = socket.socket(); listener.bind(("127.0.0.1", %d)); listener.listen(4096)
cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
cap.bind(("lo", 0))
cap.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
cap.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
print("ready", flush=True)
seen = []
def read(timeout):
    while select.select([cap], [], [], timeout)[0]:
        data, anc, _, addr = cap.recvmsg(256, 64)
        if addr[2] != socket.PACKET_OUTGOING or len(data) < 54 or data[23] != 6:
            continue
        ip = data[14:]
        ihl = (ip[0] & 15) * 4
        sport, dport, seq, ack, off, flags, win = struct.unpack_from("!HHIIBBH", ip, ihl)
        ns = next(struct.unpack("qq", d[:16]) for lvl, typ, d in anc if typ == SO_TIMESTAMPNS)
        seen.append({"t": ns[0] + ns[1] / 1e9, "ttl": ip[8], "df": bool(ip[6] & 64), "ipid": ip[4] << 8 | ip[5],
                     "sport": sport, "dport": dport, "flags": flags, "win": win,
                     "opts": ip[ihl + 20:ihl + (off >> 4) * 4].hex()})
        timeout = 0
while not select.select([sys.stdin], [], [], 0)[0]:
    read(0.05)
read(0.2)
scanned = list(seen)
seen.clear()
own = socket.create_connection(("127.0.0.1", %d))
read(0.2)
print(json.dumps({"scan": scanned, "own": [p for p in seen if p["flags"] == 2]}), flush=True)
""" % (OPEN, OPEN)


def _syn_shape(packet: dict) -> tuple:
    """What a signature rule can test of a SYN: the timestamp value (kind 8's first 4 bytes
    after its header) differs per connection and is left out."""
    opts = bytes.fromhex(packet["opts"])
    at = opts.find(b"\x08\x0a")
    if at >= 0:
        opts = opts[:at + 2] + bytes(4) + opts[at + 6:]
    return packet["ttl"], packet["df"], packet["win"], opts


def test_a_stealth_scan_is_paced_shaped_and_finds_the_open_port(netns: str) -> None:
    # MTU 1500, as a real interface's: the shaped SYN's MSS and window are the interface's.
    subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "mtu", "1500"], check=True)
    # The namespace's own connect()s (the engine's capture of the kernel SYN, the reference
    # below) send from ports apart from the scan's, so the capture tells them apart.
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.ip_local_port_range=47000 47999"],
                   check=True)
    capture = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", CAPTURE], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert capture.stdout is not None and capture.stdin is not None
    try:
        assert capture.stdout.readline().strip() == "ready"
        started = time.monotonic()
        scan = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-m", "netscand", "scan", "127.0.0.1",
                               "--stealth-level", "quiet", "--host-gap-ms", str(GAP_MS), "--jitter-ms", str(JITTER_MS),
                               "--source-ports", f"{SPORTS[0]}-{SPORTS[1]}", "--json"],
                              capture_output=True, text=True, timeout=120)
        took = time.monotonic() - started
        capture.stdin.write("stop\n")
        capture.stdin.flush()
        seen = json.loads(capture.stdout.readline())
    finally:
        capture.kill()
        capture.wait()
    assert scan.returncode == 0, scan.stderr
    [device] = json.loads(scan.stdout)["devices"]
    assert [p["port"] for p in device["ports"] if p["state"] == "open"] == [OPEN]
    assert took >= 1000 * GAP_MS / 1000  # paced: the ports x the gap at least

    scanner = [p for p in seen["scan"] if SPORTS[0] <= p["sport"] <= SPORTS[1]]
    syns = sorted((p for p in scanner if p["flags"] & 0x3F == 0x02), key=lambda p: p["t"])
    assert len(syns) == 1000  # each port once: on lo every SYN is answered at once, so no retry
    ports = [p["dport"] for p in syns]
    assert set(ports) == set(top_ports(1000))
    gaps = [b["t"] - a["t"] for a, b in zip(syns, syns[1:])]
    assert min(gaps) >= GAP_MS / 1000 - 1e-4, min(gaps)  # never two within the gap
    assert all(p["sport"] % 2 == 0 for p in syns)  # even, as Linux's connect() takes them
    # Spread: 1000 picks of 500 even ports hit about 430 of them; IP IDs are keyed-random.
    assert len({p["sport"] for p in syns}) > 380 and len({p["ipid"] for p in syns}) > 950
    assert ports != sorted(ports) and ports != list(top_ports(1000))
    ascending = sum(1 for a, b in zip(ports, ports[1:]) if b == a + 1)
    assert ascending < 20  # no sequential run a log reader would see
    [own] = seen["own"]
    assert {_syn_shape(p) for p in syns} == {_syn_shape(own)}  # every field a rule can test is the kernel's
    # No handshake completed: from the scanner's ports, only SYNs and the kernel's RSTs.
    assert {p["flags"] & 0x17 for p in scanner} <= {0x02, 0x04}
