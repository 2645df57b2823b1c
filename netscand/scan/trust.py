"""The certificates HTTPS webhook deliveries trust: the system's CA store (on Debian
/etc/ssl/certs, what ca-certificates and update-ca-certificates keep), as every other client of
the machine trusts, and with webhooks.ca_file those of a private CA beside them, so receivers
with a public certificate and receivers on the admin's own CA can be sent to at once."""

from __future__ import annotations

import ssl


def client_context(ca_file: str) -> ssl.SSLContext:
    """A client context verifying against the system's CAs and `ca_file`'s CA certificates
    (PEM), if given. Raises OSError for a file that cannot be read, ssl.SSLError for one that
    holds no certificate."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context
