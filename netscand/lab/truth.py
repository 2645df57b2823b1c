"""The lab's plan and ground truth: addressing, hosts, ports, banners; and its state file.

Everything here is a pure function of the arguments and the seed, so a scan result can be
checked against the truth without asking the lab anything.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
from pathlib import Path
from typing import Any

from netscand.lab import hostile, servers
from netscand.lab.resolver import ROUTER_NAME, hostname

SCAN_NET = "198.18.0.0/24"
ROUTED_NET = "198.19.0.0/24"
# With wide_routed, the scanner reaches all of this through the router, which drops what is not
# its connected ROUTED_NET: a routed network with few live hosts, as a discovery bench needs.
WIDE_ROUTED_NET = "198.19.0.0/16"
SCANNER_IP = "198.18.0.1"
ROUTER_IPS = ("198.18.0.254", "198.19.0.254")
HOST_BASE = 10  # first host address in each /24
MAX_HOSTS = 200

# Locally administered (0x02) and fixed, so captures are easy to read across runs.
SCANNER_MAC = "02:6e:73:00:00:01"
ROUTER_MACS = ("02:6e:73:00:00:fe", "02:6e:73:00:01:fe")

# All are in nmap's top-20 TCP ports; the low ones also fall in a 1-1024 scan.
WELL_KNOWN = (21, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 443, 445, 993, 995,
              1723, 3306, 3389, 5900, 8080)
LOW_WELL_KNOWN = tuple(p for p in WELL_KNOWN if p <= 1024)
TTLS = (64, 128, 255)

SSH_BANNERS = (
    "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
    "SSH-2.0-OpenSSH_8.4p1 Debian-5+deb11u1\r\n",
    "SSH-2.0-dropbear_2022.83\r\n",
)
BANNERS = {
    21: "220 lab FTP\r\n",
    25: "220 lab.example ESMTP Postfix (Debian/GNU)\r\n",
    110: "+OK Dovecot (Debian) ready.\r\n",
    143: "* OK [CAPABILITY IMAP4rev1] Dovecot (Debian) ready.\r\n",
}


def routed_count(hosts: int) -> int:
    """About a quarter of the hosts sit behind the router, at least one once there are two."""
    return 0 if hosts < 2 else max(1, round(hosts / 4))


def _host_ip(network: str, index: int) -> str:
    return str(ipaddress.ip_network(network)[HOST_BASE + index])


def _macs(rng: random.Random, count: int) -> list[str]:
    taken = {SCANNER_MAC, *ROUTER_MACS}
    macs: list[str] = []
    while len(macs) < count:
        mac = ":".join(f"{b:02x}" for b in (0x02, *(rng.randrange(256) for _ in range(5))))
        if mac not in taken:
            taken.add(mac)
            macs.append(mac)
    return macs


def _high_port(rng: random.Random, avoid: set[int]) -> int:
    while True:
        port = rng.randint(1025, 65535)
        if port not in avoid and port not in WELL_KNOWN:
            return port


def _ports(rng: random.Random) -> tuple[list[int], list[int], dict[str, str]]:
    n_open = rng.randint(3, 8)
    n_high = rng.randint(0, min(2, n_open - 2))
    # Two low well-known ports per host guarantee both a 1-1024 and a top-1000 scan find several.
    low = rng.sample(LOW_WELL_KNOWN, 2)
    rest = rng.sample([p for p in WELL_KNOWN if p not in low], n_open - n_high - 2)
    open_ports = set(low + rest)
    while len(open_ports) < n_open:
        open_ports.add(_high_port(rng, open_ports))
    filtered: set[int] = set()
    for _ in range(rng.randint(1, 4)):
        spare = [p for p in WELL_KNOWN if p not in open_ports | filtered]
        if spare and rng.random() < 0.5:
            filtered.add(rng.choice(spare))
        else:
            filtered.add(_high_port(rng, open_ports | filtered))
    banners: dict[str, str] = {}
    for port in sorted(open_ports):
        if port == 22:
            banners["22"] = rng.choice(SSH_BANNERS)
        elif port in BANNERS:
            banners[str(port)] = BANNERS[port]
    return sorted(open_ports), sorted(filtered), banners


def plan(prefix: str, hosts: int, seed: int, loss_pct: float, delay_ms: int,
         with_servers: bool = False, with_hostile: bool = False, wide_routed: bool = False) -> dict[str, Any]:
    """The ground truth of a lab with these arguments (before any helper process exists);
    `with_servers` adds the hosts running real daemons (servers.py), `with_hostile` the hosts
    that misbehave on purpose (hostile.py), `wide_routed` routes WIDE_ROUTED_NET (topology.py)."""
    rng = random.Random(seed)
    macs = _macs(rng, hosts)
    ttls = [TTLS[i % len(TTLS)] for i in range(hosts)]
    rng.shuffle(ttls)
    n_routed = routed_count(hosts)
    host_list = []
    for i in range(hosts):
        routed = i >= hosts - n_routed
        index = i - (hosts - n_routed) if routed else i
        open_ports, filtered, banners = _ports(rng)
        host_list.append({
            "name": f"h{i + 1}",
            "kind": "imitation",
            "netns": f"{prefix}-h{i + 1}",
            "ip": _host_ip(ROUTED_NET if routed else SCAN_NET, index),
            "mac": macs[i],
            "ttl": ttls[i],
            "routed": routed,
            "open": open_ports,
            "filtered": filtered,
            "banners": banners,
        })
    if with_servers:
        host_list += servers.plan(prefix, SCAN_NET, ROUTED_NET)
    if with_hostile:
        host_list += hostile.plan(prefix, SCAN_NET)
    for host in host_list:
        host["hostname"] = hostname(host)  # what the lab's DNS answers for its address
    router = servers.router_services()
    return {
        "prefix": prefix,
        "seed": seed,
        "loss_pct": loss_pct,
        "delay_ms": delay_ms,
        "wide_routed": wide_routed,
        "scanner": {"netns": f"{prefix}-scan", "ifname": "scan0", "ip": SCANNER_IP,
                    "mac": SCANNER_MAC, "gateway": ROUTER_IPS[0]},
        "router": {"netns": f"{prefix}-rt", "ips": list(ROUTER_IPS), "mac": ROUTER_MACS[0],
                   "hostname": ROUTER_NAME, "open": [53], "services": router["tcp"], "udp": router["udp"]},
        "hosts": host_list,
        "services_pid": None,
    }


def state_file(state_dir: Path, prefix: str) -> Path:
    return Path(state_dir) / f"{prefix}.json"


def write(path: Path, truth: dict[str, Any]) -> None:
    """Atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(truth, indent=1) + "\n")
    os.replace(tmp, path)


def read(path: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    return state
