"""The certificates HTTPS webhook deliveries trust: httpx's default ones (certifi's bundle, as
before there was a setting; not SSL_CERT_FILE's, as no setting comes from the environment), and
with webhooks.ca_file those of a private CA beside them, so receivers with a public certificate
and receivers on the admin's own CA can be sent to at once."""

from __future__ import annotations

import ssl

import httpx


def client_context(ca_file: str) -> ssl.SSLContext:
    """A client context verifying against the defaults and `ca_file`'s CA certificates (PEM),
    if given. Raises OSError for a file that cannot be read, ssl.SSLError for one that holds
    no certificate."""
    context = httpx.create_ssl_context(trust_env=False)
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context
