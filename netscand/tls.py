"""The HTTPS listener's certificate: the configured one, or a self-signed one made on first start.

cryptography makes the key and certificate (no openssl subprocess to parse); the SHA-256
fingerprint is logged so clients can pin it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_DAYS = 825  # the longest validity clients still accept for a server certificate


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path
    fingerprint: str  # SHA-256, colon-separated hex
    generated: bool


def ensure(cert: str, key: str, state_dir: Path) -> Certificate:
    if cert:
        return Certificate(Path(cert), Path(key or cert), fingerprint(Path(cert)), False)
    tls_dir = state_dir / "tls"
    cert_path, key_path = tls_dir / "cert.pem", tls_dir / "key.pem"
    if cert_path.exists() and key_path.exists():
        return Certificate(cert_path, key_path, fingerprint(cert_path), False)
    tls_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    self_signed(cert_path, key_path, "netscand", ["localhost"], ["127.0.0.1", "::1"])
    return Certificate(cert_path, key_path, fingerprint(cert_path), True)


def self_signed(cert_path: Path, key_path: Path, common_name: str, dns_names: list[str], ips: list[str]) -> None:
    """Write a new key (readable by its owner only) and a self-signed server certificate for it."""
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    built = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    cert_path.write_bytes(built.public_bytes(serialization.Encoding.PEM))


def fingerprint(cert: Path) -> str:
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    return ":".join(f"{b:02X}" for b in loaded.fingerprint(hashes.SHA256()))


def server_context(c: Certificate) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(c.cert, c.key)
    return ctx
