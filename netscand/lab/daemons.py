"""Runs the lab's real daemons: each server's, in its own namespace, and the router's dnsmasq.

Every daemon runs in the foreground with a configuration written here (never the system's
/etc files), bound only to its lab address. None is tracked by pid: tearing the lab down stops
whatever runs in its namespaces, and that is where all of them are.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from netscand import tls
from netscand.lab import namespaces, resolver
from netscand.lab.errors import LabError

READY_TIMEOUT = 60  # mariadbd's first start on a fresh data directory takes a few seconds
DNS_HOSTS, DNS_LOG = "dnsmasq.hosts", "dnsmasq.log"  # in the lab's work directory
HOST_KEY = "ssh_host_ed25519_key"


def work_dir(state_dir: Path, prefix: str) -> Path:
    return Path(state_dir) / f"{prefix}.d"


def page_title(host: dict[str, Any]) -> str:
    return f"{host['name']} web console"


def _nginx(host: dict[str, Any], d: Path) -> list[str]:
    name = resolver.hostname(host)
    tls.self_signed(d / "cert.pem", d / "key.pem", name, [name], [host["ip"]])
    (d / "nginx.conf").write_text(f"""
pid {d}/nginx.pid; error_log {d}/nginx.err; daemon off; worker_processes 1;
events {{}}
http {{ access_log off; default_type text/html;
  server {{ listen {host['ip']}:80; listen {host['ip']}:443 ssl; server_name {name};
    ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem;
    location / {{ return 200 "<html><head><title>{page_title(host)}</title></head><body></body></html>"; }} }}
}}
""")
    return ["/usr/sbin/nginx", "-c", str(d / "nginx.conf")]


def host_key(d: Path) -> Path:
    """A lab sshd's private host key, in its host's directory."""
    return d / HOST_KEY


def _openssh(host: dict[str, Any], d: Path) -> list[str]:
    Path("/run/sshd").mkdir(exist_ok=True)  # its privilege-separation directory
    # Each host its own key, as real machines have (the system's /etc/ssh keys would make every lab
    # host one machine to an identity by host key); kept across restarts, as a machine keeps it.
    if not host_key(d).exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host["name"], "-f", str(host_key(d))],
                       check=True, capture_output=True)
    return ["/usr/sbin/sshd", "-D", "-e", "-p", "22", "-o", f"ListenAddress={host['ip']}",
            "-o", f"PidFile={d}/sshd.pid", "-h", str(host_key(d))]


def _vsftpd(host: dict[str, Any], d: Path) -> list[str]:
    (d / "vsftpd.conf").write_text(
        f"listen=YES\nlisten_ipv6=NO\nlisten_address={host['ip']}\nbackground=NO\n"
        "anonymous_enable=YES\nlocal_enable=NO\nwrite_enable=NO\nsecure_chroot_dir=/var/run/vsftpd/empty\n"
        f"xferlog_enable=NO\nvsftpd_log_file={d}/vsftpd.log\n")
    return ["/usr/sbin/vsftpd", str(d / "vsftpd.conf")]


def _redis(host: dict[str, Any], d: Path) -> list[str]:
    return ["/usr/bin/redis-server", "--bind", host["ip"], "--port", "6379", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--protected-mode", "no", "--dir", str(d)]


def _mariadb(host: dict[str, Any], d: Path) -> list[str]:
    data = d / "mysql"
    init = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                           "--skip-test-db", "--auth-root-authentication-method=socket"],
                          capture_output=True, text=True)
    if init.returncode:
        raise LabError(f"mariadb-install-db failed: {init.stderr.strip()[-300:]}")
    # A remote account, as a server that takes remote clients has: without one MariaDB answers
    # every remote connection with "host not allowed" instead of its greeting.
    (d / "init.sql").write_text("CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'lab-only';\n")
    return ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={data}", "--user=root", f"--init-file={d}/init.sql",
            f"--bind-address={host['ip']}", "--port=3306", f"--socket={d}/mysqld.sock",
            f"--pid-file={d}/mariadb.pid", "--skip-name-resolve", "--innodb-buffer-pool-size=16M"]


def _snmpd(host: dict[str, Any], d: Path) -> list[str]:
    (d / "snmpd.conf").write_text(f"rocommunity public default\nsysName {resolver.hostname(host)}\n"
                                  "sysLocation netscand lab\n")
    # -I -smux: no SMUX listener, which would open TCP 199 on every address.
    # Its persistent state (engine boots and the like) stays with the lab, not in /var/lib/snmp.
    return ["env", f"SNMP_PERSISTENT_DIR={d}/snmp", "/usr/sbin/snmpd", "-f", "-Lo", "-I", "-smux", "-C", "-c", str(d / "snmpd.conf"), "-p", str(d / "snmpd.pid"),
            f"udp:{host['ip']}:161"]


def _ntpsec(host: dict[str, Any], d: Path) -> list[str]:
    # No time source, and neither the kernel clock discipline nor ntpd's own: the clock is the
    # whole machine's (a network namespace has none of its own), so the lab's ntpd only answers.
    (d / "ntp.conf").write_text(f"interface ignore all\ninterface listen {host['ip']}\n"
                                "disable kernel\ndisable ntp\nrestrict default\n")
    return ["/usr/sbin/ntpd", "-n", "-c", str(d / "ntp.conf"), "-p", str(d / "ntpd.pid")]


def _tftpd(host: dict[str, Any], d: Path) -> list[str]:
    (d / "tftp").mkdir(exist_ok=True)  # served read-only and empty: a request gets "File not found"
    return ["/usr/sbin/in.tftpd", "-L", "-a", f"{host['ip']}:69", "-s", str(d / "tftp")]


def _memcached(host: dict[str, Any], d: Path) -> list[str]:
    return ["/usr/bin/memcached", "-u", "nobody", "-l", host["ip"], "-p", "11211", "-U", "11211", "-m", "16"]


def _miniupnpd(host: dict[str, Any], d: Path) -> list[str]:
    # An Internet gateway needs an external interface; the lab has none, and lo stands in for
    # it (port mappings then fail, which a scan never asks for). The uuid is fixed per host.
    uuid = f"6e73c0de-0000-4000-8000-{host['mac'].replace(':', '')}"
    (d / "miniupnpd.conf").write_text(
        f"ext_ifname=lo\nlistening_ip=eth0\nhttp_port=5000\nenable_natpmp=no\nenable_upnp=yes\n"
        f"secure_mode=yes\nuuid={uuid}\nlease_file={d}/upnp.leases\ndeny 0-65535 0.0.0.0/0 0-65535\n")
    return ["/usr/sbin/miniupnpd", "-d", "-f", str(d / "miniupnpd.conf"), "-P", str(d / "miniupnpd.pid")]


START = {"nginx": _nginx, "openssh": _openssh, "vsftpd": _vsftpd, "redis": _redis, "mariadb": _mariadb,
         "snmpd": _snmpd, "ntpsec": _ntpsec, "tftpd-hpa": _tftpd, "memcached": _memcached,
         "miniupnpd": _miniupnpd}


def dns_hosts(truth: dict[str, Any], state_dir: Path) -> Path:
    """The lab DNS's records as the truth has them now (each host's name at its address, the
    router's at each of its), written as the hosts file dnsmasq reads at its start and again on
    SIGHUP (a moved host's, mutate.py); its path. Replaced whole, by a rename, so that a reload
    never reads half of it."""
    path = work_dir(state_dir, truth["prefix"]) / DNS_HOSTS
    lines = [f"{h['ip']} {resolver.hostname(h)}" for h in truth["hosts"]]
    lines += [f"{ip} {resolver.ROUTER_NAME}" for ip in truth["router"]["ips"]]
    written = path.with_suffix(".new")
    written.write_text("\n".join(lines) + "\n")
    written.replace(path)
    return path


def _dnsmasq(truth: dict[str, Any], hosts: Path) -> list[str]:
    """The lab's DNS server, answering for lab names only (those of `hosts`, a hosts file, and no
    other: --no-hosts keeps the machine's /etc/hosts out): no upstream, so nothing leaves."""
    return ["/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--no-poll", "--bind-interfaces", f"--listen-address={','.join(truth['router']['ips'])}",
            "--log-facility=-", f"--local=/{resolver.DOMAIN}/", "--pid-file=", f"--addn-hosts={hosts}"]


def _spawn(netns: str, argv: list[str], log: Path) -> None:
    with open(log, "ab") as out:
        subprocess.Popen(namespaces.exec_argv(netns, argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                         start_new_session=True)


def _listening(netns: str, ips: list[str]) -> set[tuple[str, str, int]]:
    """(protocol, address, port) of every socket listening in netns; a socket on the wildcard
    address (miniupnpd's, bound to eth0) counts for each of `ips`, the namespace's own addresses."""
    out = subprocess.run(namespaces.exec_argv(netns, ["ss", "-Hlntu"]), capture_output=True, text=True).stdout
    found = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 5:
            addr, _, port = fields[4].rpartition(":")
            addr = addr.split("%", 1)[0]  # "0.0.0.0%eth0": bound to a device as well
            for ip in (ips if addr in ("0.0.0.0", "*") else [addr]):
                found.add((fields[0], ip, int(port)))
    return found


def start(truth: dict[str, Any], state_dir: Path) -> None:
    """Start every daemon of the lab and wait until each listens on all of its ports."""
    root = work_dir(state_dir, truth["prefix"])
    root.mkdir(parents=True, exist_ok=True)
    waiting: dict[str, set[tuple[str, str, int]]] = {}
    router = truth["router"]
    _spawn(router["netns"], _dnsmasq(truth, dns_hosts(truth, state_dir)), root / DNS_LOG)
    waiting[router["netns"]] = {(proto, ip, 53) for ip in router["ips"] for proto in ("tcp", "udp")}
    addresses = {router["netns"]: router["ips"]}
    for host in truth["hosts"]:
        if host.get("kind") != "server":
            continue
        d = root / host["name"]
        d.mkdir(parents=True, exist_ok=True)
        for daemon in host["daemons"]:
            _spawn(host["netns"], START[daemon](host, d), d / f"{daemon}.log")
        waiting[host["netns"]] = ({("tcp", host["ip"], int(p)) for p in host["services"]}
                                  | {("udp", host["ip"], int(p)) for p in host["udp"]})
        addresses[host["netns"]] = [host["ip"]]
    deadline = time.monotonic() + READY_TIMEOUT
    while waiting:
        for netns in list(waiting):
            waiting[netns] -= _listening(netns, addresses[netns])
            if not waiting[netns]:
                del waiting[netns]
        if waiting and time.monotonic() > deadline:
            missing = ", ".join(f"{p} {a}:{n}" for want in waiting.values() for p, a, n in sorted(want))
            raise LabError(f"lab daemons never listened on {missing} (logs in {root})")
        time.sleep(0.1)
