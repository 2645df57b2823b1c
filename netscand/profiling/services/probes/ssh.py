"""SSH: the server sends its identification string first (RFC 4253 section 4.2)."""

from __future__ import annotations

import re

from netscand.profiling.services.base import ServiceInfo, cpe, lines, os_hint, printable, token

name = "ssh"
ports = frozenset({22, 2222})
tls = False
payload: bytes | None = None

_IDENT = re.compile(r"SSH-(\d\.\d+)-(\S+)(?: (.*))?")
# OpenSSH's portable releases carry "p1" that NVD keeps in the CPE update field ("9.2:p1").
_OPENSSH = re.compile(r"(\d+\.\d+)(p\d+)?")
_CPE = {"openssh": ("openbsd", "openssh"), "dropbear": ("dropbear_ssh_project", "dropbear_ssh")}
_PRODUCT = {"openssh": "OpenSSH", "dropbear": "Dropbear"}


def parse(data: bytes) -> ServiceInfo | None:
    # RFC 4253 lets a server send other lines before the identification string.
    for line in lines(data, 8192)[:8]:
        match = _IDENT.fullmatch(line.strip())
        if match:
            return _info(match, printable(line.encode("latin-1")))
    return None


def _info(match: re.Match[str], banner: str | None) -> ServiceInfo:
    protocol, software, comment = match.groups()
    product, _, rest = software.partition("_")
    version = token(rest)
    key = product.lower()
    extra = {"protocol": protocol, **os_hint(comment)}
    name_cpe = None
    if key in _CPE:
        update = None
        if key == "openssh" and version and (split := _OPENSSH.fullmatch(version)):
            version_only, update = split.groups()
            name_cpe = cpe(*_CPE[key], version_only, update)
        else:
            name_cpe = cpe(*_CPE[key], version)
    return ServiceInfo("ssh", _PRODUCT.get(key, token(product)), version, name_cpe, banner, extra)
