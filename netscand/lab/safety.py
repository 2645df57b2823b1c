"""Checks that keep the lab from touching anything it did not create.

The lab only ever lives in its own namespaces; the checks here are what lets `up` and `down`
refuse instead of guessing when the host namespace or an existing namespace looks foreign.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from pyroute2 import IPRoute

from netscand.lab.errors import LabError
from netscand.lab.namespaces import is_mounted, ns_fd
from netscand.lab.truth import ROUTED_NET, SCAN_NET

LAB_NETS = (ipaddress.ip_network(SCAN_NET), ipaddress.ip_network(ROUTED_NET))
NSID_NOT_ASSIGNED = 0xFFFFFFFF


def overlapping(prefixes: Iterable[str]) -> list[str]:
    """The IPv4 prefixes among these that overlap the lab's networks.

    A default route is left out: it contains everything, and the lab never routes to the
    host namespace, so it cannot make lab traffic leave.
    """
    bad = []
    for prefix in prefixes:
        net = ipaddress.ip_network(prefix, strict=False)
        if net.version == 4 and net.prefixlen > 0 and any(net.overlaps(lab) for lab in LAB_NETS):
            bad.append(prefix)
    return bad


def check_host_namespace() -> None:
    """Refuse to build when the calling namespace already uses the lab's addresses."""
    with IPRoute() as ipr:
        prefixes = [f"{a.get('address')}/{a['prefixlen']}" for a in ipr.addr("dump", family=socket.AF_INET)]
        prefixes += [f"{r.get('dst') or '0.0.0.0'}/{r['dst_len']}" for r in ipr.route("dump", family=socket.AF_INET)]
    bad = overlapping(prefixes)
    if bad:
        raise LabError(f"the host namespace already uses {', '.join(sorted(set(bad)))}, "
                       f"which overlaps the lab's {SCAN_NET} / {ROUTED_NET}; refusing to start")


def check_removable(names: Iterable[str]) -> list[str]:
    """The namespaces among these that hold an interface the lab would never have created.

    Deleting such a namespace would destroy that interface, or move a physical one back to the
    host, so `down` leaves it alone. Lab namespaces only hold lo, veths and bridges, and none of
    their veths has a peer in the host namespace.
    """
    foreign = []
    with IPRoute() as root:
        host_peers = {link.get("link_netnsid") for link in root.link("dump")
                      if link.get(("linkinfo", "kind")) == "veth" and link.get("link_netnsid") is not None}
        for name in filter(is_mounted, names):
            with ns_fd(name) as fd:
                nsid = (root.get_netnsid(fd=fd) or {}).get("nsid", NSID_NOT_ASSIGNED)
            if nsid != NSID_NOT_ASSIGNED and nsid in host_peers:
                foreign.append(name)
                continue
            with IPRoute(netns=name, flags=0) as ipr:
                for link in ipr.link("dump"):
                    if link.get("ifname") != "lo" and link.get(("linkinfo", "kind")) not in ("veth", "bridge"):
                        foreign.append(name)
                        break
    return foreign
