"""Bad input to `netscand scan`: one clear line on stderr, exit code 2, nothing sent.

Each run happens inside a throwaway network namespace (loopback only, no route), so even a
validation bug could not put a packet on any network.
"""

import subprocess
import sys
from pathlib import Path

import pytest


def run_scan(netns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-m", "netscand", "scan", *argv],
                          capture_output=True, text=True, timeout=30)


def assert_one_line(proc: subprocess.CompletedProcess[str], words: str) -> None:
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netscand: ") and words in lines[0]


@pytest.mark.parametrize("argv, words", [
    (["300.1.1.1"], "300.1.1.1"),
    (["198.18.0.9-198.18.0.1"], "reversed"),
    (["2001:db8::1"], "IPv6"),
    (["198.18.0.1", "--ports", "0"], "0"),
    (["198.18.0.1", "--ports", "80-22"], "80-22"),
    (["198.18.0.1", "--profile", "custom"], "--ports"),
    (["198.18.0.1", "--profiling"], "--profiling"),
    (["198.18.0.1", "--rate", "0"], "--rate"),
    (["198.18.0.1", "--rate", "1e9"], "above the policy's maximum"),
    # Bounded as the API bounds them: a plan cannot carry more (a traceback from its writer before).
    (["198.18.0.1", "--retries", "11"], "--retries must be 0-10"),
    (["198.18.0.1", "--timeout-ms", "99999999999"], "--timeout-ms must be 1-600000"),
    (["198.18.0.0/15,192.0.2.1"], "192.0.2.1 is outside the allowed targets"),
])
def test_bad_input_is_one_line_and_exit_2(netns: str, argv: list[str], words: str) -> None:
    assert_one_line(run_scan(netns, *argv), words)


@pytest.mark.parametrize("policy, words", [
    ('allowed_targets = ["lab"]', 'allowed_targets[0]: expected an IPv4 CIDR block such as "10.0.0.0/8", got "lab"'),
    ("excluded_targets = 3", "policy.excluded_targets: expected a list of IPv4 CIDR blocks"),
    ("max_rate = 0", "policy.max_rate: expected a number > 0, got 0"),
])
def test_bad_policy_is_one_line_and_exit_2(netns: str, tmp_path: Path, policy: str, words: str) -> None:
    config = tmp_path / "netscand.toml"
    config.write_text(f"[policy]\n{policy}\n")
    assert_one_line(run_scan(netns, "198.18.0.1", "--config", str(config)), words)


def test_without_raw_sockets_the_refusal_is_the_one_line(netns: str, tmp_path: Path) -> None:
    """Nothing else is worth saying, not even which addresses the policy would have skipped."""
    config = tmp_path / "netscand.toml"
    config.write_text('[policy]\nexcluded_targets = ["198.18.0.0/30"]\n')
    proc = subprocess.run(["ip", "netns", "exec", netns, "setpriv", "--bounding-set", "-net_raw", "--inh-caps",
                           "-net_raw", sys.executable, "-m", "netscand", "scan", "198.18.0.0/29", "--config",
                           str(config)], capture_output=True, text=True, timeout=30)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.strip().splitlines() == ["netscand: sending raw packets needs root or CAP_NET_RAW"]
