"""Re-records the fixtures in this folder from real daemons, through the detector's own I/O path.

Run inside the network namespace that serves them on 127.0.0.1 (standard ports), as root:
    ip netns exec NS python tests/profiling/services/recorded/capture.py
It writes NAME.bin for each entry of TARGETS: the banner for banner services, else the answer to
the probe's payload. Record the Debian package versions in README.md when you re-record.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from netscand.profiling.services.detector import _exchange
from netscand.profiling.services.probes import dns, http, mqtt, postgresql, rdp, redis, smb, tls

HERE = Path(__file__).parent
# file stem -> (port, over TLS, probe whose payload is sent; None: only the banner is read)
TARGETS = {
    "ssh-openssh": (22, False, None),
    "http-nginx": (80, False, http),
    "https-nginx": (443, True, http),
    "http-plain-to-nginx-tls-port": (443, False, http),
    "tls-nginx-serverhello": (443, False, tls),
    "ftp-vsftpd": (21, False, None),
    "smtp-exim4": (25, False, None),
    "pop3-dovecot": (110, False, None),
    "imap-dovecot": (143, False, None),
    "dns-dnsmasq": (53, False, dns),
    "redis": (6379, False, redis),
    "mysql-mariadb": (3306, False, None),
    "postgresql": (5432, False, postgresql),
    "mqtt-mosquitto": (1883, False, mqtt),
    "telnet-inetutils": (23, False, None),
    "smb-samba": (445, False, smb),
    "rdp-xrdp": (3389, False, rdp),
}


async def main() -> None:
    for stem, (port, use_tls, probe) in TARGETS.items():
        wait = 2.0 if probe is None or use_tls else 0.0
        reply = await _exchange("127.0.0.1", port, probe, use_tls=use_tls, banner_wait=wait, timeout=5.0)
        data = b"" if reply is None else reply.banner or reply.answer
        (HERE / f"{stem}.bin").write_bytes(data)
        print(f"{stem}: {len(data)} bytes {data[:60]!r}")
    pem = ssl.get_server_certificate(("127.0.0.1", 443))
    (HERE / "https-nginx-cert.der").write_bytes(ssl.PEM_cert_to_DER_cert(pem))


if __name__ == "__main__":
    asyncio.run(main())
