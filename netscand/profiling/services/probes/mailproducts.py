"""Mailbox servers named in POP3 and IMAP greetings (shared by the two probes; not a probe itself)."""

from __future__ import annotations

import re

from netscand.profiling.services.base import cpe, os_hint, token

_PRODUCTS = (
    (re.compile(r"\bDovecot()"), "Dovecot", "dovecot", "dovecot"),
    (re.compile(r"\bCyrus (?:IMAP|POP3) v?(\d[\w.]*)"), "Cyrus IMAP", "cmu", "cyrus_imap_server"),
    (re.compile(r"\bCourier-(?:IMAP|POP3)()"), "Courier", "courier-mta", "courier"),
    (re.compile(r"\bMicrosoft Exchange()"), "Microsoft Exchange", "microsoft", "exchange_server"),
)


def identify(greeting: str) -> tuple[str | None, str | None, str | None, dict[str, object]]:
    """(product, version, cpe, extra) named by a greeting line; Nones when none is known."""
    extra = os_hint(greeting)
    for pattern, product, vendor, cpe_product in _PRODUCTS:
        match = pattern.search(greeting)
        if match:
            version = token(match.group(1))
            return product, version, cpe(vendor, cpe_product, version), extra
    return None, None, None, extra
