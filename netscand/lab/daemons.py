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
from netscand.lab import resolver, namespaces
from netscand.lab.errors import LabError

READY_TIMEOUT = 60  # mariadbd's first start on a fresh data directory takes a few seconds


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


def _openssh(host: dict[str, Any], d: Path) -> list[str]:
    Path("/run/sshd").mkdir(exist_ok=True)  # its privilege-separation directory
    return ["/usr/sbin/sshd", "-D", "-e", "-p", "22", "-o", f"ListenAddress={host['ip']}",
            "-o", f"PidFile={d}/sshd.pid"]


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


START = {"nginx": _nginx, "openssh": _openssh, "vsftpd": _vsftpd, "redis": _redis, "mariadb": _mariadb,
         "snmpd": _snmpd}


def _dnsmasq(truth: dict[str, Any]) -> list[str]:
    """The lab's DNS server, answering for lab names only: no upstream, so nothing leaves."""
    records = [f"--host-record={resolver.hostname(h)},{h['ip']}" for h in truth["hosts"]]
    records += [f"--host-record={resolver.ROUTER_NAME},{ip}" for ip in truth["router"]["ips"]]
    return ["/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--no-poll", "--bind-interfaces", f"--listen-address={','.join(truth['router']['ips'])}",
            "--log-facility=-", f"--local=/{resolver.DOMAIN}/", "--pid-file=", *records]


def _spawn(netns: str, argv: list[str], log: Path) -> None:
    with open(log, "ab") as out:
        subprocess.Popen(namespaces.exec_argv(netns, argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                         start_new_session=True)


def _listening(netns: str) -> set[tuple[str, str, int]]:
    out = subprocess.run(namespaces.exec_argv(netns, ["ss", "-Hlntu"]), capture_output=True, text=True).stdout
    found = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 5:
            addr, _, port = fields[4].rpartition(":")
            found.add((fields[0], addr, int(port)))
    return found


def start(truth: dict[str, Any], state_dir: Path) -> None:
    """Start every daemon of the lab and wait until each listens on all of its ports."""
    root = work_dir(state_dir, truth["prefix"])
    root.mkdir(parents=True, exist_ok=True)
    waiting: dict[str, set[tuple[str, str, int]]] = {}
    router = truth["router"]
    _spawn(router["netns"], _dnsmasq(truth), root / "dnsmasq.log")
    waiting[router["netns"]] = {("tcp", ip, 53) for ip in router["ips"]}
    for host in truth["hosts"]:
        if host.get("kind") != "server":
            continue
        d = root / host["name"]
        d.mkdir(parents=True, exist_ok=True)
        for daemon in host["daemons"]:
            _spawn(host["netns"], START[daemon](host, d), d / f"{daemon}.log")
        waiting[host["netns"]] = ({("tcp", host["ip"], int(p)) for p in host["services"]}
                                  | {("udp", host["ip"], int(p)) for p in host["udp"]})
    deadline = time.monotonic() + READY_TIMEOUT
    while waiting:
        for netns in list(waiting):
            waiting[netns] -= _listening(netns)
            if not waiting[netns]:
                del waiting[netns]
        if waiting and time.monotonic() > deadline:
            missing = ", ".join(f"{p} {a}:{n}" for want in waiting.values() for p, a, n in sorted(want))
            raise LabError(f"lab daemons never listened on {missing} (logs in {root})")
        time.sleep(0.1)
