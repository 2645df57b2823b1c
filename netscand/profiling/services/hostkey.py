"""An SSH server's host key, as nmap's ssh-hostkey gets it: a second short connection that does
the key exchange only (asyncssh's get_server_host_key), never authentication.

Nothing of this machine's SSH setup takes part: no client configuration file is read (config
None), no known_hosts, no agent and no client keys (loading ~/.ssh's keys is asyncssh's default).
A fetch ends at `timeout` and its reads at MAX_READ bytes (asyncssh bounds each banner line and
packet, not what a server sends in all: a server dripping SSH_MSG_IGNORE packets would otherwise
be read until the timeout). Both bound only what waits: computing runs on the event loop, where
no timeout interrupts it, so only key exchanges whose cost the client fixes are offered (KEX_ALGS).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncssh
from asyncssh.kex import get_kex_algs

TIMEOUT_S = 5.0
# A real server's version line, KEXINIT and key exchange reply take a few KiB (an RSA host key
# certificate a few more).
MAX_READ = 64 * 1024
# Elliptic curves, ML-KEM hybrids and fixed groups (the old fixed-group ones too: an old device's
# only choice, and this exchange protects nothing). Never diffie-hellman-group-exchange-*, which
# asyncssh offers by default: its server picks the prime, and a hostile one sends a huge one
# (32,768 bits fit in MAX_READ) that OpenSSL checks for seconds (a real prime: minutes) on the
# event loop. Nor RSA key exchange, whose key the server picks too.
KEX_ALGS = tuple(a for a in ("mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org",
                             "curve448-sha512", "ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
                             "diffie-hellman-group14-sha256", "diffie-hellman-group16-sha512",
                             "diffie-hellman-group14-sha1", "diffie-hellman-group1-sha1")
                 if a.encode() in get_kex_algs())  # those this asyncssh has
_options: asyncssh.SSHClientConnectionOptions | None = None


async def fetch(ip: str, port: int, *, timeout: float = TIMEOUT_S) -> dict[str, str] | None:
    """{"type", "fingerprint"} of the host key the server on ip:port presents ("SHA256:<base64>",
    as `ssh-keygen -lf` prints it); None when there is none to be had in time."""
    try:
        async with asyncio.timeout(timeout):
            key = await asyncssh.get_server_host_key(
                ip, port, tunnel=_Capped(MAX_READ), config=None, kex_algs=list(KEX_ALGS), options=await options())
    except Exception:  # noqa: BLE001 - a stranger's server failing the exchange is just "no key"
        return None
    return described(key) if key is not None else None


def described(key: asyncssh.SSHKey) -> dict[str, str]:
    return {"type": key.get_algorithm(), "fingerprint": key.get_fingerprint("sha256")}


async def options() -> asyncssh.SSHClientConnectionOptions:
    """What every fetch starts from, built once. asyncssh builds a fetch's own options from
    them in its executor (its constructors may read files), as it builds these; a fetch's own
    arguments replace theirs (its kex_algs, even when not given), hence KEX_ALGS there."""
    global _options
    if _options is None:
        _options = await asyncssh.SSHClientConnectionOptions.construct(
            config=None, known_hosts=None, client_keys=None, agent_identities=None, agent_path=None,
            x509_trusted_certs=None, x509_trusted_cert_paths=None, keepalive_interval=0)
    return _options


class _Capped:
    """A "tunnel" in asyncssh's sense that is a plain TCP connection whose reads stop at a cap."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    async def create_connection(self, session_factory: Any, host: str, port: int) -> tuple[None, Any]:
        session = session_factory()
        await asyncio.get_running_loop().create_connection(lambda: _Counting(session, self.limit), host, port)
        return None, session


class _Counting(asyncio.Protocol):
    """asyncssh's connection protocol, cut off once the server has sent `limit` bytes."""

    def __init__(self, inner: asyncio.Protocol, limit: int) -> None:
        self.inner, self.left = inner, limit
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.left -= len(data)
        if self.left < 0:
            assert self.transport is not None
            self.transport.abort()  # connection_lost follows, which fails asyncssh's exchange
            return
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
