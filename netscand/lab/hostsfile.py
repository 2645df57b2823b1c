"""Host names for the lab, served to the scanner namespace by the system resolver itself.

`ip netns exec NS` bind-mounts /etc/netns/NS/* over /etc, so a hosts file there gives reverse
lookups inside the scanner namespace real answers, and a resolv.conf pointing at the namespace's
own loopback keeps its DNS queries from going anywhere.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

ETC_NETNS = Path("/etc/netns")
DOMAIN = "lab.test"  # RFC 6761: .test never resolves outside a test


def hostname(host: dict[str, Any]) -> str:
    return f"{host['name']}.{DOMAIN}"


def write(truth: dict[str, Any]) -> None:
    etc = ETC_NETNS / truth["scanner"]["netns"]
    etc.mkdir(parents=True, exist_ok=True)
    lines = ["127.0.0.1 localhost"] + [f"{h['ip']} {hostname(h)} {h['name']}" for h in truth["hosts"]]
    (etc / "hosts").write_text("\n".join(lines) + "\n")
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")


def remove(prefix: str) -> None:
    for etc in ETC_NETNS.glob(f"{prefix}-*"):
        shutil.rmtree(etc, ignore_errors=True)
