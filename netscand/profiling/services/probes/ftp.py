"""FTP: the server greets first with a 220 reply (RFC 959)."""

from __future__ import annotations

import re

from netscand.profiling.services.base import ServiceInfo, cpe, lines, printable, token

name = "ftp"
ports = frozenset({21, 2121})
tls = False
payload: bytes | None = None

# (pattern on the greeting, product, CPE vendor, CPE product); group 1 is the version if any.
_PRODUCTS = (
    (re.compile(r"\(vsFTPd (\d[\w.]*)\)"), "vsftpd", "beasts", "vsftpd"),
    (re.compile(r"OOPS: vsftpd()"), "vsftpd", "beasts", "vsftpd"),  # its refusal when misconfigured
    (re.compile(r"ProFTPD(?: (\d[\w.]*))?"), "ProFTPD", "proftpd", "proftpd"),
    (re.compile(r"Pure-FTPd()"), "Pure-FTPd", "pureftpd", "pure-ftpd"),
    (re.compile(r"FileZilla Server(?: version)? ?(\d[\w.]*)?"), "FileZilla Server",
     "filezilla-project", "filezilla_server"),
    (re.compile(r"Microsoft FTP Service()"), "Microsoft ftpd", "microsoft", "internet_information_services"),
)


def parse(data: bytes) -> ServiceInfo | None:
    text = lines(data, 4096)
    # A greeting is "220" (or a refusal: 421, vsftpd's "500 OOPS") then a space or "-" (multi-line);
    # SMTP greets with 220 too, so FTP also needs the word or a known product, and the SMTP probe
    # runs first on a port without a hint.
    if not text or not re.match(r"(220|421|500)[ -]", text[0]):
        return None
    greeting = " ".join(text[:4])
    banner = printable(data)
    for pattern, product, vendor, cpe_product in _PRODUCTS:
        match = pattern.search(greeting)
        if match:
            version = token(match.group(1))
            return ServiceInfo("ftp", product, version, cpe(vendor, cpe_product, version), banner)
    if "ftp" in greeting.lower() and "smtp" not in greeting.lower():
        return ServiceInfo("ftp", banner=banner)
    return None
