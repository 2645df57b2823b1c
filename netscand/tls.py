"""The HTTPS listener's certificate: the configured one, or a self-signed one made on first start.

cryptography makes the key and certificate (no openssl subprocess to parse); the SHA-256
fingerprint is logged so clients can pin it. A generated pair is written without following
links: the state directory is the daemon user's.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from netscand import files

VALID_DAYS = 825  # the longest validity clients still accept for a server certificate
# Where a generated certificate lives, relative to the state directory.
TLS_DIR, CERT_NAME, KEY_NAME = "tls", "cert.pem", "key.pem"
GENERATED = (TLS_DIR, f"{TLS_DIR}/{CERT_NAME}", f"{TLS_DIR}/{KEY_NAME}")
KEY_MODE, CERT_MODE = 0o600, 0o644


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path
    fingerprint: str  # SHA-256, colon-separated hex
    generated: bool


def ensure(cert: str, key: str, state_dir: Path) -> Certificate:
    """The configured pair, or the generated one in the state directory, made when missing.
    Raises ValueError when the state directory's tls is a link, OSError when it can't be made."""
    if cert:
        return Certificate(Path(cert), Path(key or cert), fingerprint(Path(cert)), False)
    tls_dir = state_dir / TLS_DIR
    cert_path, key_path = tls_dir / CERT_NAME, tls_dir / KEY_NAME
    if cert_path.exists() and key_path.exists():
        return Certificate(cert_path, key_path, fingerprint(cert_path), False)
    directory = _open_directory(state_dir)
    try:
        _write_pair(directory, *_make("netscand", ["localhost"], ["127.0.0.1", "::1"]))
    finally:
        os.close(directory)
    return Certificate(cert_path, key_path, fingerprint(cert_path), True)


def _open_directory(state_dir: Path) -> int:
    """The generated pair's directory, made when missing, opened without following a link."""
    state = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(TLS_DIR, 0o750, dir_fd=state)
        return os.open(TLS_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=state)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ValueError(f"{state_dir / TLS_DIR} is not a directory (a link?): remove it, and a new "
                             "certificate is made there") from None
        raise
    finally:
        os.close(state)


def self_signed(cert_path: Path, key_path: Path, common_name: str, dns_names: list[str], ips: list[str]) -> None:
    """Write a new key (readable by its owner only) and a self-signed server certificate for it."""
    cert_pem, key_pem = _make(common_name, dns_names, ips)
    files.write_whole(key_path, key_pem, KEY_MODE)
    files.write_whole(cert_path, cert_pem, CERT_MODE)


def _write_pair(directory: int, cert_pem: bytes, key_pem: bytes) -> None:
    # The key first: ensure() takes a certificate with a key beside it as a finished pair.
    files.write_whole(KEY_NAME, key_pem, KEY_MODE, dir_fd=directory)
    files.write_whole(CERT_NAME, cert_pem, CERT_MODE, dir_fd=directory)


def _make(common_name: str, dns_names: list[str], ips: list[str]) -> tuple[bytes, bytes]:
    """A new key and a self-signed server certificate for it: (certificate PEM, key PEM)."""
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
    key_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    return built.public_bytes(serialization.Encoding.PEM), key_pem


def fingerprint(cert: Path) -> str:
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    return ":".join(f"{b:02X}" for b in loaded.fingerprint(hashes.SHA256()))


def server_context(c: Certificate) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(c.cert, c.key)
    return ctx
