"""What OpenSSH's own tools say of SSH keys, which tests compare netscand's findings with."""

from __future__ import annotations

import subprocess
from pathlib import Path


def keygen_fingerprint(path: Path) -> str:
    """The fingerprint `ssh-keygen -lf` prints of a key file ("256 SHA256:... comment (ED25519)")."""
    return subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True,
                          check=True).stdout.split()[1]
