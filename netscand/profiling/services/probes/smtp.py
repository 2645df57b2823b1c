"""SMTP: the server greets first with a 220 reply (RFC 5321 section 4.3.1)."""

from __future__ import annotations

import re

from netscand.profiling.services.base import ServiceInfo, cpe, lines, os_hint, printable, token

name = "smtp"
ports = frozenset({25, 465, 587, 2525})
tls = False
payload: bytes | None = None

_PRODUCTS = (
    (re.compile(r"\bExim (\d[\w.]*)"), "Exim", "exim", "exim"),
    (re.compile(r"\bPostfix()"), "Postfix", "postfix", "postfix"),
    (re.compile(r"\bSendmail (\d[\w.]*)"), "Sendmail", "sendmail", "sendmail"),
    (re.compile(r"\bOpenSMTPD()"), "OpenSMTPD", "openbsd", "opensmtpd"),
    (re.compile(r"Microsoft ESMTP MAIL Service()"), "Microsoft Exchange", "microsoft", "exchange_server"),
)


def parse(data: bytes) -> ServiceInfo | None:
    text = lines(data, 4096)
    if not text or not re.match(r"220[ -]", text[0]):
        return None
    greeting = " ".join(text[:4])
    if "smtp" not in greeting.lower() and not any(p.search(greeting) for p, *_ in _PRODUCTS):
        return None
    extra = os_hint(greeting)
    for pattern, product, vendor, cpe_product in _PRODUCTS:
        match = pattern.search(greeting)
        if match:
            version = token(match.group(1))
            name_cpe = cpe(vendor, cpe_product, version)
            return ServiceInfo("smtp", product, version, name_cpe, printable(data), extra)
    return ServiceInfo("smtp", banner=printable(data), extra=extra)
