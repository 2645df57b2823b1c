"""Records the lab daemons' answers to the UDP probes, for the parser tests (run by hand, as root,
with a lab up: `python tests/profiling/udp/capture.py PREFIX`). Each file is one datagram, the
answer to the probe's requests sent with ident IDENT."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from netscand.profiling.udp import dns, memcached, ntp, ssdp, tftp
from netscand.profiling.udp.base import UdpProbe

IDENT = 0x1234
HERE = Path(__file__).parent / "recorded"


def ask(probe: UdpProbe, ip: str, port: int, pick: int = 0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        for datagram in probe.requests(ip, IDENT):
            s.sendto(datagram, (ip, port))
        answers = []
        try:
            while len(answers) <= pick:
                answers.append(s.recvfrom(65535)[0])
        except TimeoutError:
            pass
        return answers[pick]


def main(prefix: str) -> None:
    if "--in-lab" not in sys.argv:
        subprocess.run(["ip", "netns", "exec", f"{prefix}-scan", sys.executable, __file__, prefix, "--in-lab"],
                       check=True)
        return
    state = json.loads(Path(f"/run/netscand-lab/{prefix}.json").read_text())
    ips = {h["name"]: h["ip"] for h in state["hosts"]}
    HERE.mkdir(exist_ok=True)
    for name, probe, ip, port in (("dns-dnsmasq", dns, state["router"]["ips"][0], 53),
                                  ("ntp-ntpsec-mode4", ntp, ips["s3"], 123),
                                  ("memcached", memcached, ips["s1"], 11211),
                                  ("ssdp-miniupnpd", ssdp, ips["s4"], 1900),
                                  ("tftp-hpa-error", tftp, ips["s2"], 69)):
        (HERE / f"{name}.bin").write_bytes(ask(probe, ip, port))


if __name__ == "__main__":
    main(sys.argv[1])
