"""Generic TLS: a ClientHello, recognised by the TLS record that answers it; and certificate fields.

The ClientHello is the one Python's own ssl module writes, taken from a memory BIO, so it is
what a real client sends rather than hand-made bytes. The detector does the real handshake
(with verification off: it identifies, it does not trust) and reads the certificate with
`certificate_fields`.
"""

from __future__ import annotations

import hashlib
import ssl
from typing import Any

from cryptography import x509

from netscand.profiling.services.base import ServiceInfo

name = "tls"
ports = frozenset({443, 465, 636, 853, 990, 993, 995, 5061, 8443, 8883})
tls = False  # this probe speaks the TLS record layer itself


def client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED  # old servers are worth naming too
    return context


def _client_hello() -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = client_context().wrap_bio(incoming, outgoing)
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass  # expected: the ClientHello is written, the handshake now waits for the server
    return outgoing.read()


payload: bytes | None = _client_hello()

_CONTENT = {0x15: "alert", 0x16: "handshake"}
_VERSIONS = {0: "SSL 3.0", 1: "TLS 1.0", 2: "TLS 1.1", 3: "TLS 1.2", 4: "TLS 1.3"}


def parse(data: bytes) -> ServiceInfo | None:
    """A TLS record header (handshake or alert, version 3.x) starts the reply: something speaks TLS."""
    if len(data) < 5 or data[0] not in _CONTENT or data[1] != 3 or data[2] not in _VERSIONS:
        return None
    return ServiceInfo("tls", extra={"record": _CONTENT[data[0]]})


def certificate_fields(der: bytes | None) -> dict[str, Any]:
    """subject, issuer, not_after and sha256 (the SHA-256 of the DER, lowercase hex: the stable
    evidence of which certificate it is) of a DER certificate; {} when there is none or it won't
    parse."""
    if not der:
        return {}
    try:
        cert = x509.load_der_x509_certificate(der)
        return {
            "subject": cert.subject.rfc4514_string()[:256],
            "issuer": cert.issuer.rfc4514_string()[:256],
            "not_after": cert.not_valid_after_utc.isoformat(),
            "sha256": hashlib.sha256(der).hexdigest(),
        }
    except Exception:  # noqa: BLE001 - a stranger's malformed certificate is just "no fields"
        return {}
