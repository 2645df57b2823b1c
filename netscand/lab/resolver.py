"""Lab host names: what the lab's DNS serves, and the scanner namespace's resolver pointing at it.

`ip netns exec NS` bind-mounts /etc/netns/NS/* over /etc, so a resolv.conf there sends the
scanner namespace's lookups to the lab's own DNS server (dnsmasq on the router, daemons.py), and
a hosts file there keeps the machine's own /etc/hosts out: every lab name comes from real DNS.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

ETC_NETNS = Path("/etc/netns")
DOMAIN = "lab.test"  # RFC 6761: .test never resolves outside a test
ROUTER_NAME = f"gw.{DOMAIN}"


def hostname(host: dict[str, Any]) -> str:
    return f"{host['name']}.{DOMAIN}"


def write(truth: dict[str, Any]) -> None:
    etc = ETC_NETNS / truth["scanner"]["netns"]
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text("127.0.0.1 localhost\n")
    # A few tries: the lab's loss rules drop DNS like any other traffic of the scanner.
    (etc / "resolv.conf").write_text(f"nameserver {truth['scanner']['gateway']}\nsearch {DOMAIN}\n"
                                     "options timeout:1 attempts:3\n")


def remove(prefix: str) -> None:
    for etc in ETC_NETNS.glob(f"{prefix}-*"):
        shutil.rmtree(etc, ignore_errors=True)
