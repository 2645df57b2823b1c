"""Changing a running lab between two scans, as a network changes between two audits: a port
opened, a server stopped, a banner announcing a newer version, a host moved to a new address
with the same MAC (and a host given another MAC: the imitation hosts' own are locally
administered, which an inventory rightly does not trust to tell a host alone). Each change is
made on the wire and written into the lab's truth together, so what a scan must find stays a
function of the truth.

Every change is made in a namespace named by the truth, so each one is first checked to be a
namespace of this lab (lab_netns): a truth without it would otherwise change the root
namespace, whose eth0 is the machine's own.

The imitation hosts' ports are served by the one services process from the truth (services.py),
so a change to them rewrites the truth and restarts that process: the listeners, their banners
and their addresses then follow. A server's daemon is stopped where it runs, in its namespace,
and the lab's DNS (the router's dnsmasq) is told to reread its records there too.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import signal
import time
from typing import Any

from pyroute2 import IPRoute, NetlinkError, netns

from netscand.lab import daemons, namespaces, procs, servers, truth
from netscand.lab.errors import LabError
from netscand.lab.lab import Lab
from netscand.lab.topology import SCAN_IF

SERVICES = "netscand.lab.services"
HOST_IF = "eth0"
ROUTER_IFS = ("eth0", "eth1")  # the router's side of the scanner's segment, of the routed one
MAC_RE = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
DNS_RELOAD_TIMEOUT = 5.0  # dnsmasq rereads a lab's few records in milliseconds


def host(lab: Lab, name: str) -> dict[str, Any]:
    """The truth of the lab's host `name` (the dict the changes below rewrite)."""
    found = next((h for h in lab.truth["hosts"] if h["name"] == name), None)
    if found is None:
        raise LabError(f"lab {lab.prefix!r} has no host {name!r}")
    return found


def lab_netns(lab: Lab, found: dict[str, Any]) -> str:
    """The namespace of `found` (a host, the router or the scanner of the lab's truth), once it is
    sure to be an existing one of this lab: IPRoute(netns=None) or a foreign name would act on the
    root namespace, whose eth0 is the machine's own, or on another lab."""
    ns = found.get("netns")
    if not isinstance(ns, str) or not ns.startswith(f"{lab.prefix}-"):
        raise LabError(f"{found.get('name', 'a node')}'s namespace {ns!r} is not one of lab {lab.prefix!r}")
    if not namespaces.exists(ns):
        raise LabError(f"{found.get('name', 'a node')}'s namespace {ns} does not exist: is lab {lab.prefix!r} up?")
    return ns


def _imitation(lab: Lab, name: str) -> dict[str, Any]:
    found = host(lab, name)
    if found["kind"] != "imitation":
        raise LabError(f"{name} is a {found['kind']} host: only imitation hosts' ports are served from the truth")
    return found


def open_port(lab: Lab, name: str, port: int, banner: str = "") -> None:
    """A new listening TCP port on imitation host `name`, greeting with `banner` if given."""
    found = _imitation(lab, name)
    if port in found["open"] or port in found["filtered"]:
        raise LabError(f"{name} already has port {port} open or filtered")
    lab_netns(lab, found)  # the services process serves it there
    found["open"] = sorted([*found["open"], port])
    if banner:
        found["banners"][str(port)] = banner
    _restart_services(lab)


def swap_banner(lab: Lab, name: str, port: int, banner: str) -> None:
    """Imitation host `name`'s open `port` greets with `banner` from now on (a daemon upgraded)."""
    found = _imitation(lab, name)
    if port not in found["open"]:
        raise LabError(f"{name} has no open port {port}")
    lab_netns(lab, found)  # the services process serves it there
    found["banners"][str(port)] = banner
    _restart_services(lab)


def move_host(lab: Lab, name: str, new_ip: str) -> None:
    """Imitation host `name` leaves its address for `new_ip` on the same segment, keeping its
    interface and MAC (as a host renumbered by hand or given a new DHCP lease), and the lab's DNS
    answers its name with the new address from then on (and the old address with no name), as a
    DHCP server that updates DNS does."""
    found = _imitation(lab, name)
    old_ip = found["ip"]
    _check_free(lab, found, new_ip)
    network = _segment(found)
    with IPRoute(netns=lab_netns(lab, found), flags=0) as ipr:
        index = ipr.link_lookup(ifname=HOST_IF)[0]
        # Removed first: with promote_secondaries off (the default), deleting a primary address
        # takes the secondaries of its subnet with it.
        ipr.addr("del", index=index, address=old_ip, prefixlen=network.prefixlen)
        ipr.addr("add", index=index, address=new_ip, prefixlen=network.prefixlen)
        if found["routed"]:  # the route through the router went with the old address
            ipr.route("add", dst=truth.SCAN_NET, gateway=truth.ROUTER_IPS[1])
    _forget_neighbours(lab, found["routed"], (old_ip, new_ip))
    found["ip"] = new_ip
    found.setdefault("previous_ips", []).append(old_ip)
    _restart_services(lab)
    _reload_dns(lab)


def set_mac(lab: Lab, name: str, mac: str) -> None:
    """Host `name`'s interface takes `mac` (lower-case, colon-separated; a NIC replaced, or a
    vendor's address given to an imitation host, whose own are locally administered)."""
    found = host(lab, name)
    if not MAC_RE.fullmatch(mac):
        raise LabError(f"bad MAC {mac!r}: six lower-case hex octets joined by ':'")
    if int(mac[:2], 16) & 1:
        raise LabError(f"{mac} is a multicast MAC: no interface may own it")
    if mac in {h["mac"] for h in lab.truth["hosts"]} | {truth.SCANNER_MAC, *truth.ROUTER_MACS}:
        raise LabError(f"{mac} is already a lab MAC")
    with IPRoute(netns=lab_netns(lab, found), flags=0) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=HOST_IF)[0], address=mac)
    _forget_neighbours(lab, found["routed"], (found["ip"],))
    found["mac"] = mac
    truth.write(lab.state_file, lab.truth)


def _segment(found: dict[str, Any]) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(truth.ROUTED_NET if found["routed"] else truth.SCAN_NET)


def _check_free(lab: Lab, moving: dict[str, Any], new_ip: str) -> None:
    network = _segment(moving)
    try:
        address = ipaddress.IPv4Address(new_ip)
    except ValueError:
        raise LabError(f"{new_ip!r} is not an IPv4 address") from None
    if address not in network or address in (network.network_address, network.broadcast_address):
        raise LabError(f"{new_ip} is not a host address of {moving['name']}'s segment {network}")
    taken = {h["ip"] for h in lab.truth["hosts"]} | set(truth.ROUTER_IPS) | {truth.SCANNER_IP}
    if new_ip in taken:
        raise LabError(f"{new_ip} is already a lab address")


def _forget_neighbours(lab: Lab, routed: bool, ips: tuple[str, ...]) -> None:
    """Drop the neighbour entries of these addresses where the host's segment is on-link: an old
    entry's MAC would otherwise be used until it goes stale, and a failed lookup would keep
    answering "unreachable" for a while."""
    router = lab_netns(lab, lab.truth["router"])
    where = [(router, ROUTER_IFS[1])] if routed else [
        (lab_netns(lab, lab.truth["scanner"]), SCAN_IF), (router, ROUTER_IFS[0])]
    for ns, ifname in where:
        with IPRoute(netns=ns, flags=0) as ipr:
            index = ipr.link_lookup(ifname=ifname)[0]
            for ip in ips:
                try:
                    ipr.neigh("del", dst=ip, ifindex=index)
                except NetlinkError as exc:
                    if exc.code != errno.ENOENT:
                        raise


def stop_daemon(lab: Lab, name: str, daemon: str) -> None:
    """Stop server `name`'s `daemon` (a key of servers.DAEMONS): its ports close, as when a
    service is shut down or crashes, and the truth no longer lists them."""
    found = host(lab, name)
    if daemon not in found.get("daemons", []):
        raise LabError(f"{name} runs no {daemon}")
    pids = _running(lab_netns(lab, found), servers.DAEMONS[daemon].binary)
    if not pids:
        raise LabError(f"{daemon} is not running on {name}")
    survivors = procs.stop(pids)
    if survivors:
        raise LabError(f"{daemon} on {name} survived SIGKILL: {survivors}")
    gone = servers.DAEMONS[daemon]
    found["daemons"] = [d for d in found["daemons"] if d != daemon]
    found["services"] = {p: s for p, s in found["services"].items() if int(p) not in gone.tcp}
    found["udp"] = {p: s for p, s in found["udp"].items() if int(p) not in gone.udp}
    found["open"] = [p for p in found["open"] if p not in gone.tcp]
    truth.write(lab.state_file, lab.truth)


def _reload_dns(lab: Lab) -> None:
    """The lab's DNS answers as the truth says now: its hosts file rewritten, then its dnsmasq
    told to read it again (SIGHUP: it clears its cache and rereads its hosts files, its
    command-line records it cannot). The signal goes only to the dnsmasq running in this lab's
    router namespace; done once its log says it has read the file again."""
    pids = _running(lab_netns(lab, lab.truth["router"]), servers.DAEMONS["dnsmasq"].binary)
    if len(pids) != 1:
        raise LabError(f"lab {lab.prefix!r} runs {len(pids)} DNS servers in its router, not one: is it up?")
    hosts = daemons.dns_hosts(lab.truth, lab.state_dir)
    log = daemons.work_dir(lab.state_dir, lab.prefix) / daemons.DNS_LOG
    read = f"read {hosts} - ".encode()
    before = log.read_bytes().count(read)
    os.kill(pids[0], signal.SIGHUP)
    deadline = time.monotonic() + DNS_RELOAD_TIMEOUT
    while log.read_bytes().count(read) <= before:
        if time.monotonic() > deadline:
            raise LabError(f"the DNS of lab {lab.prefix!r} did not read {hosts} again within "
                           f"{DNS_RELOAD_TIMEOUT:g} s (its log: {log})")
        time.sleep(0.02)


def _running(ns: str, binary: str) -> list[int]:
    """Pids in namespace `ns` running `binary` (a daemon's workers too: sshd's, vsftpd's)."""
    wanted = os.path.realpath(binary)
    found = []
    for pid in netns.ns_pids().get(ns, []):
        try:
            if os.readlink(f"/proc/{pid}/exe") == wanted:
                found.append(pid)
        except OSError:
            pass  # gone meanwhile, or a kernel thread
    return found


def _restart_services(lab: Lab) -> None:
    """The services process again, from the truth as it is now (written first: it reads it)."""
    truth.write(lab.state_file, lab.truth)
    old = lab.truth.get("services_pid")
    # A pid from the truth is trusted only while it is still this lab's helper.
    if old and procs.is_helper(old, lab.state_file) and procs.stop([old]):
        raise LabError(f"the services process {old} of lab {lab.prefix!r} survived SIGKILL")
    lab.truth["services_pid"] = procs.spawn(SERVICES, lab.state_file, [], lab.log_file("services"))
    truth.write(lab.state_file, lab.truth)
