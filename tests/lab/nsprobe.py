"""Probes run inside a lab namespace (`ip netns exec NS python nsprobe.py ...`); prints JSON.

    nsprobe.py tcp TIMEOUT IP:PORT ...     -> [{"target", "result": open|refused|timeout|error, "banner"}]
    nsprobe.py ping IP COUNT INTERVAL      -> {"sent", "received", "rtts_ms", "ttls"}
    nsprobe.py burst IP PORT N             -> {"connected": how many of N simultaneous connects succeeded}

ICMP echo is done here rather than with ping(8), which the CI image need not have.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import sys
import time
from typing import Any


def tcp(timeout: float, targets: list[str]) -> list[dict[str, Any]]:
    results = []
    for target in targets:
        ip, port = target.rsplit(":", 1)
        sock = socket.socket()
        sock.settimeout(timeout)
        entry: dict[str, Any] = {"target": target, "banner": ""}
        try:
            sock.connect((ip, int(port)))
            entry["result"] = "open"
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            entry["banner"] = data.decode(errors="replace")
        except ConnectionRefusedError:
            entry["result"] = "refused"
        except TimeoutError:
            entry["result"] = entry.get("result", "timeout")
        except OSError as exc:
            entry["result"] = entry.get("result", f"error: {exc}")
        finally:
            sock.close()
        results.append(entry)
    return results


def burst(ip: str, port: int, count: int, timeout: float = 5.0) -> dict[str, Any]:
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex((ip, port))
        socks.append(sock)
    pending, connected = set(socks), 0
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        _, writable, _ = select.select([], list(pending)[:500], [], 0.1)
        for sock in writable:
            pending.discard(sock)
            connected += sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    for sock in socks:
        sock.close()
    return {"connected": connected}


def _checksum(data: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def ping(ip: str, count: int, interval: float, wait: float = 0.5) -> dict[str, Any]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    sent_at: dict[int, float] = {}
    rtts: list[float] = []
    ttls: list[int] = []
    deadline = next_send = time.monotonic()
    seq = 0
    while seq < count or (sent_at and time.monotonic() < deadline):
        now = time.monotonic()
        if seq < count and now >= next_send:
            header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            payload = b"netscand-lab-ping" + b"\0" * 15
            packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload
            sent_at[seq] = now
            sock.sendto(packet, (ip, 0))
            seq += 1
            next_send = now + interval
            deadline = now + wait
        timeout = max(0.0, (next_send if seq < count else deadline) - time.monotonic())
        if select.select([sock], [], [], timeout)[0]:
            data = sock.recv(2048)
            icmp = data[(data[0] & 0x0F) * 4:]
            kind, _, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
            if kind == 0 and rid == ident and rseq in sent_at:
                rtts.append((time.monotonic() - sent_at.pop(rseq)) * 1000)
                ttls.append(data[8])
    return {"sent": count, "received": len(rtts), "rtts_ms": rtts, "ttls": ttls}


if __name__ == "__main__":
    if sys.argv[1] == "tcp":
        print(json.dumps(tcp(float(sys.argv[2]), sys.argv[3:])))
    elif sys.argv[1] == "burst":
        print(json.dumps(burst(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    else:
        print(json.dumps(ping(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))))
