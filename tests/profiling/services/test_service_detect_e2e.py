"""detect() end to end, inside a throwaway network namespace: real sshd, nginx (HTTP and HTTPS)
and redis-server, plus replay servers for silence, garbage, hang-ups and TLS on odd ports.

Needs root and the Debian packages openssh-server, nginx-light (or nginx) and redis-server; it
fails, never skips, without them (CI installs them). Nothing listens outside the namespace.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
NGINX_CONF = """
pid {d}/nginx.pid; error_log {d}/nginx.err; daemon off;
events {{}}
http {{ access_log off; default_type text/html;
  server {{ listen 127.0.0.1:80; listen 127.0.0.1:443 ssl;
    ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem;
    location / {{ return 200 "<html><head><title>netscand e2e</title></head></html>"; }} }}
}}
"""


def make_cert(directory: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netscand-e2e")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=2)).sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


@pytest.fixture
def daemons(netns: str, tmp_path: Path) -> Iterator[Path]:
    """sshd :22, nginx :80/:443, redis :6379 in the namespace; stopped (SIGTERM, by pid) after."""
    make_cert(tmp_path)
    (tmp_path / "nginx.conf").write_text(NGINX_CONF.format(d=tmp_path))
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    commands = [
        ["/usr/sbin/sshd", "-D", "-o", "ListenAddress=127.0.0.1", "-p", "22"],
        ["nginx", "-c", str(tmp_path / "nginx.conf")],
        ["redis-server", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--dir", str(tmp_path)],
    ]
    started = []
    try:
        for command in commands:
            # `ip netns exec` execs the daemon: the pid is the daemon's own (nginx's master).
            log = open(tmp_path / f"{Path(command[0]).name}.log", "wb")
            started.append(subprocess.Popen(["ip", "netns", "exec", netns, *command], stdout=log, stderr=log))
        yield tmp_path
    finally:
        for proc in started:
            proc.terminate()  # SIGTERM: nginx's master also stops its workers
        for proc in started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_detection(netns: str, directory: Path) -> dict[str, Any]:
    result = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, str(HERE / "nsdetect.py"),
         str(directory / "cert.pem"), str(directory / "key.pem"), "22", "80", "443", "6379"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_detect_in_a_namespace(netns: str, daemons: Path) -> None:
    out = run_detection(netns, daemons)
    found = out["found"]

    def brief(port: int) -> tuple[Any, ...] | None:
        info = found[str(port)]
        return info and (info["service"], info["product"])

    assert brief(22) == ("ssh", "OpenSSH") and found["22"]["cpe"].startswith("cpe:2.3:a:openbsd:openssh:")
    assert brief(80) == ("http", "nginx") and found["80"]["extra"]["title"] == "netscand e2e"
    assert brief(443) == ("https", "nginx")
    assert found["443"]["extra"]["tls"]["subject"] == "CN=netscand-e2e"
    assert brief(6379) == ("redis", "Redis") and found["6379"]["version"]
    # replay servers
    assert brief(2222) == ("ssh", "OpenSSH")
    assert brief(5900) == ("vnc", None)
    assert brief(8443) == ("https", "nginx") and found["8443"]["extra"]["tls"]["issuer"] == "CN=netscand-e2e"
    assert brief(9000) == ("http", "nginx")
    assert brief(9001) == ("unknown", None)  # silent
    assert brief(9002) == ("unknown", None) and found["9002"]["banner"]  # garbage, shown as its banner
    assert brief(9003) == ("unknown", None)  # hangs up at once
    assert brief(9004) == ("https", "nginx")  # TLS found on a port that gives no hint
    assert found["9005"] is not None and len(found["9005"]["banner"] or "") <= 256  # 1 MB line
    assert found["9"] is None  # nothing listens
    assert out["most_in_flight"] == 2
    assert out["max_loop_gap"] < 0.5, "detection blocked the event loop"
