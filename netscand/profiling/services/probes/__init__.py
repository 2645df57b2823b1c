"""One module per service family; each module is itself a `Probe` (name, ports, tls, payload, parse).

ALL is the order tried when a port gives no hint: the commonest services first, and among banner
services the stricter parsers first, so a weaker one never claims a banner a stricter one knows.
"""

from __future__ import annotations

from netscand.profiling.services.base import Probe
from netscand.profiling.services.probes import (
    dns,
    ftp,
    http,
    imap,
    memcached,
    mqtt,
    mysql,
    pop3,
    postgresql,
    rdp,
    redis,
    smb,
    smtp,
    ssh,
    telnet,
    tls,
    vnc,
)

ALL: tuple[Probe, ...] = (
    ssh,
    mysql,
    vnc,
    telnet,
    imap,
    smtp,
    ftp,
    pop3,
    http,
    tls,
    redis,
    postgresql,
    dns,
    mqtt,
    rdp,
    smb,
    memcached,
)
BANNER: tuple[Probe, ...] = tuple(p for p in ALL if p.payload is None)
ACTIVE: tuple[Probe, ...] = tuple(p for p in ALL if p.payload is not None)
