"""Service detection against servers that misbehave on purpose, inside a throwaway network
namespace (nsbounds.py): what a port, a host and a whole identify step may cost is bounded,
whatever the other side sends or withholds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from netscand.profiling.services.detector import MAX_CONNECTIONS, MAX_READ

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
TIMEOUT = 1.0  # nsbounds.py's detect() timeout and banner wait
# Each exchange: connect and handshake (timeout), banner (banner wait), answer (timeout).
PORT_BOUND = MAX_CONNECTIONS * 3 * TIMEOUT
SLACK = 1.0  # a busy 2-core machine's scheduling


def run_bounds(netns: str, directory: Path) -> dict[str, Any]:
    result = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, str(HERE / "nsbounds.py"), str(directory)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])  # the lines before are the detector's log


def test_ports_hosts_and_scans_cost_bounded_time(netns: str, tmp_path: Path) -> None:
    out = run_bounds(netns, tmp_path)
    for port in ("9100", "8080", "9101", "443", "8443"):
        assert out[port]["seconds"] < PORT_BOUND + SLACK, (port, out[port])
    drip = out["9100"]  # one byte every 0.2 s: the banner read ends at its wait, not at the drip's end
    assert drip["info"]["service"] == "unknown" and drip["seconds"] < TIMEOUT + SLACK
    assert drip["info"]["banner"].startswith("xxx")
    dripped_answer = out["8080"]  # the answer read ends at its deadline, with what came so far
    assert (dripped_answer["info"]["service"], dripped_answer["info"]["product"]) == ("http", "drip")
    endless = out["9101"]  # a banner that never ends is cut at MAX_READ; what is shown, at 256
    assert endless["info"]["service"] == "unknown" and len(endless["info"]["banner"]) <= 256
    assert out["read_cap"] == MAX_READ
    # A 180 KiB certificate chain: OpenSSL refuses the Certificate message (over its 100 KiB
    # max_cert_list), so the handshake fails at once and no certificate is reported.
    chain = out["443"]
    assert chain["info"]["service"] in ("unknown", "tls") and "tls" not in chain["info"]["extra"]
    # A TLS port that never answers the ClientHello: the handshake times out with the connect.
    assert out["8443"]["info"]["service"] == "unknown"

    host = out["host_deadline"]  # six silent ports would take ~4 s each; the host's deadline is 1.5 s
    assert host["found"] == {"127.0.0.3:22": "ssh"}, "the silent host's unfinished ports are left out"
    assert 1.5 <= host["seconds"] < 1.5 + SLACK
    assert host["left_open"] == 0, "cancelled detection left connections open"
    scan = out["scan_deadline"]  # one port at a time, each host 1 s, the whole step 4 s
    assert 4.0 <= scan["seconds"] < 4.0 + SLACK
    assert scan["tarpit"] == ["127.0.0.4"]
    assert scan["services"]["127.0.0.3"] == {"22": "ssh"}
    assert scan["services"]["127.0.0.4"] == {}, "a tarpit host got service detection"
    assert all(not services for ip, services in scan["services"].items() if ip.startswith("127.0.0.1"))
