"""detect_udp over real sockets, inside a throwaway network namespace: real memcached (UDP on)
and tftpd-hpa (which answers from a port of its own) on 127.0.0.1, a closed address, a mute and
a garbage-spewing server. Needs root and the Debian packages (.ci/setup); fails, never skips,
without them. Nothing listens or sends outside the namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netscand.lab.servers import package_version
from tests.profiling.names.test_names_e2e import wait_udp

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
TIMEOUT, RETRIES = 0.5, 1


@pytest.fixture
def daemons(netns: str, tmp_path: Path) -> Iterator[None]:
    """memcached and tftpd-hpa on 127.0.0.1 in the namespace; stopped by pid after."""
    (tmp_path / "tftp").mkdir()
    # in.tftpd resolves its -a address with AI_ADDRCONFIG, which fails where the only IPv4
    # address is loopback's: a lab address on lo gives it one (nothing can reach it).
    subprocess.run(["ip", "-n", netns, "addr", "add", "198.18.255.1/32", "dev", "lo"], check=True)
    commands = [["/usr/bin/memcached", "-u", "nobody", "-l", "127.0.0.1", "-p", "11211", "-U", "11211", "-m", "16"],
                ["/usr/sbin/in.tftpd", "-L", "-a", "127.0.0.1:69", "-s", str(tmp_path / "tftp")]]
    procs = [subprocess.Popen(["ip", "netns", "exec", netns, *argv], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for argv in commands]
    try:
        wait_udp(netns, 11211)
        wait_udp(netns, 69)
        yield
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def run(netns: str) -> dict[str, Any]:
    result = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, str(HERE / "udp" / "nsudp.py"), str(TIMEOUT), str(RETRIES)],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def test_udp_detection_in_a_namespace(netns: str, daemons: None) -> None:
    out = run(netns)
    found = out["real"]["found"]
    memcached = found["127.0.0.1:11211"]
    assert (memcached["service"], memcached["product"]) == ("memcached", "memcached")
    assert memcached["version"] == package_version("/usr/bin/memcached")
    assert found["127.0.0.1:69"]["service"] == "tftp"  # heard from the server's own port
    # Both answered at once: neither waited out a timeout, though TFTP's answer names no product.
    assert out["real"]["elapsed"] < TIMEOUT
    # Port unreachable ends an exchange at once.
    assert out["closed"]["found"] == {} and out["closed"]["elapsed"] < TIMEOUT
    # Silence: the query sent 1 + RETRIES times, TIMEOUT apart, then given up.
    assert out["mute"]["found"] == {} and out["received"]["mute"] == 1 + RETRIES
    assert TIMEOUT * (1 + RETRIES) <= out["mute"]["elapsed"] < TIMEOUT * (1 + RETRIES) + 0.5
    # Garbage, an echo and another exchange's answer name nothing, whatever probe asked.
    assert out["spew"]["found"] == {}
