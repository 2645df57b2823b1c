"""The certificates HTTPS webhook deliveries trust: the system's CA store (on Debian
/etc/ssl/certs, what ca-certificates and update-ca-certificates keep), as every other client of
the machine trusts, and with webhooks.ca_file those of a private CA beside them, so receivers
with a public certificate and receivers on the admin's own CA can be sent to at once.

The store is found as OpenSSL finds it, so SSL_CERT_FILE and SSL_CERT_DIR name another one
when they are set in the daemon's environment."""

from __future__ import annotations

import json
import ssl


class CaFileError(Exception):
    """webhooks.ca_file cannot be read as CA certificates; the message says why, on one line."""


def client_context(ca_file: str) -> ssl.SSLContext:
    """A client context verifying against the system's CAs and `ca_file`'s CA certificates
    (PEM), if given. Raises CaFileError for a file that cannot be read or holds no certificate."""
    context = ssl.create_default_context()
    if ca_file:
        _load(context, ca_file)
    return context


def check_ca_file(path: str) -> None:
    """Raises CaFileError if `path` would fail client_context. Only the file is read, not the
    system's store (tens of milliseconds): a reload checks it on the control process's loop."""
    _load(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), path)


def _load(context: ssl.SSLContext, path: str) -> None:
    shown = json.dumps(path)  # whole, as a path cut short names no file; quoted, so on one line
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:  # an OSError too: first
        raise CaFileError(f"webhooks.ca_file: expected a PEM file of CA certificates, "
                          f"got {shown} ({exc.reason or exc})") from None
    except OSError as exc:
        raise CaFileError(f"webhooks.ca_file: cannot read {shown}: {exc.strerror or exc}") from None
