"""Bad input to `netscand scan`: one clear line on stderr, exit code 2, nothing sent."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("argv, words", [
    (["300.1.1.1"], "300.1.1.1"),
    (["198.18.0.9-198.18.0.1"], "reversed"),
    (["2001:db8::1"], "IPv6"),
    (["198.18.0.1", "--ports", "0"], "0"),
    (["198.18.0.1", "--ports", "80-22"], "80-22"),
    (["198.18.0.1", "--profile", "custom"], "--ports"),
    (["198.18.0.1", "--rate", "0"], "--rate"),
])
def test_bad_input_is_one_line_and_exit_2(argv, words):
    proc = subprocess.run([sys.executable, "-m", "netscand", "scan", *argv], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netscand: ") and words in lines[0]
