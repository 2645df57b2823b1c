"""Certificate chains for the hostile TLS ports, made at helper start with `cryptography`.

"Big" stays under OpenSSL's default limit on the certificate list a client accepts (100 KiB,
SSL_MAX_CERT_LIST_DEFAULT), so the handshake completes and the certificate parser gets a leaf
of hundreds of names and a subject of hundreds of attributes. "Huge" is ten times past it, so
a client must refuse it cleanly. One EC key signs everything: nothing here is meant to verify.
"""

from __future__ import annotations

import datetime
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_LABEL = "x" * 60  # a long DNS label (at most 63)


@dataclass(frozen=True)
class Shape:
    intermediates: int
    names_per_cert: int  # subject alternative names in each certificate
    leaf_names: int
    leaf_attributes: int  # organizational units in the leaf's subject, 60 characters each


BIG = Shape(intermediates=8, names_per_cert=20, leaf_names=600, leaf_attributes=200)
HUGE = Shape(intermediates=99, names_per_cert=110, leaf_names=150, leaf_attributes=10)


def _cert(key: ec.EllipticCurvePrivateKey, subject: x509.Name, issuer: x509.Name, names: int,
          ca: bool, serial: int) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    sans = [x509.DNSName(f"n{serial}-{i}.{_LABEL}.hostile.lab.test") for i in range(names)]
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(serial).not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


def _name(common: str, units: int = 0) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    attributes += [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"{i:04d}{'u' * 56}") for i in range(units)]
    return x509.Name(attributes)


def chain(shape: Shape) -> tuple[list[x509.Certificate], ec.EllipticCurvePrivateKey]:
    """Leaf first, then the intermediates, then the root, as a server sends them."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = _name("hostile root")
    certs = [_cert(key, issuer, issuer, shape.names_per_cert, True, 1)]
    for i in range(shape.intermediates):
        subject = _name(f"hostile intermediate {i}")
        certs.append(_cert(key, subject, issuer, shape.names_per_cert, True, i + 2))
        issuer = subject
    leaf = _cert(key, _name("hostile.lab.test", shape.leaf_attributes), issuer, shape.leaf_names, False,
                 shape.intermediates + 2)
    return [leaf, *reversed(certs)], key


def pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def server_context(shape: Shape) -> ssl.SSLContext:
    """A TLS server context sending this shape of chain (the files exist only while it loads)."""
    certs, key = chain(shape)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as d:
        cert_file, key_file = Path(d) / "chain.pem", Path(d) / "key.pem"
        cert_file.write_bytes(pem(certs))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        context.load_cert_chain(cert_file, key_file)
    return context
