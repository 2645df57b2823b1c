"""Who is asking, and may they: the Unix socket is trusted, TCP needs a bearer token.

Scopes are ranked: `read` may GET, `scan` may also start, stop and delete scans, `admin` may do
everything. A scan belongs to its creator: a `scan` token sees only its own scans; `read`
tokens (dashboards, monitoring, which can start nothing and so own nothing) and `admin` see
every scan. Challenges follow RFC 6750 so generic HTTP clients know what went wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Protocol

from starlette.requests import Request

from netscand.api.listener import PEER_KEY, listener_of
from netscand.api.problems import INSUFFICIENT_SCOPE, UNAUTHENTICATED, Problem

Scope = Literal["read", "scan", "admin"]
RANK: dict[str, int] = {"read": 0, "scan": 1, "admin": 2}
UNIX_OWNER = "unix"  # the Unix socket's clients: "unix:<uid>", or just this when the uid is unknown
REALM = "netscand"
# RFC 6750 b64token; anything else cannot be one of our tokens, so it is rejected unlooked-up.
_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)


class TokenVerifier(Protocol):
    def verify_token(self, token: str) -> dict[str, str] | None: ...


@dataclass(frozen=True)
class Principal:
    owner: str  # the token's name, or "unix:<uid>"; scans and idempotency keys belong to it
    scope: str
    listener: str

    @property
    def viewer(self) -> str | None:
        """Whose scans this principal may see, stop and delete: its own with scope `scan`;
        None (every scan) with `read` (which may only look) and `admin`."""
        return self.owner if self.scope == "scan" else None

    @property
    def remote(self) -> bool:
        """Not a client of the Unix socket: the policy's socket-only targets are not for it."""
        return self.listener != "unix"


def peer_owner(request: Request) -> str:
    """The owner a Unix-socket client acts as: its uid, which the daemon reads from the socket
    (SO_PEERCRED) and no client can choose."""
    peer = request.scope.get(PEER_KEY)
    uid = peer.get("uid") if isinstance(peer, dict) else None
    return f"{UNIX_OWNER}:{uid}" if isinstance(uid, int) else UNIX_OWNER


def authenticate(request: Request, tokens: TokenVerifier) -> Principal:
    """The request's principal; raises a 401 Problem when a TCP request has no valid token."""
    kind = listener_of(request.scope)
    if kind == "unix":
        return Principal(peer_owner(request), "admin", kind)
    header = request.headers.get("authorization")
    if header is None or header.lstrip()[:7].lower() != "bearer ":
        # No credentials of our scheme: a bare challenge, without an error (RFC 6750 3.1).
        raise _unauthenticated("this listener needs an 'Authorization: Bearer <token>' header",
                               f'Bearer realm="{REALM}"')
    match = _BEARER.fullmatch(header.strip())
    found = tokens.verify_token(match.group(1)) if match else None
    if found is None:
        # One answer for a malformed, unknown or revoked token: nothing to probe tokens with.
        raise _unauthenticated("the bearer token is not valid",
                               f'Bearer realm="{REALM}", error="invalid_token"')
    return Principal(str(found["name"]), str(found["scope"]), kind)


def authorize(principal: Principal, needed: Scope) -> None:
    """Raises a 403 Problem unless the principal's scope covers `needed`."""
    if RANK.get(principal.scope, -1) < RANK[needed]:
        raise Problem(403, INSUFFICIENT_SCOPE, "Insufficient scope",
                      f"this needs a token with scope '{needed}' or higher; "
                      f"token '{principal.owner}' has scope '{principal.scope}'",
                      headers={"WWW-Authenticate":
                               f'Bearer realm="{REALM}", error="insufficient_scope", scope="{needed}"'})


def _unauthenticated(detail: str, challenge: str) -> Problem:
    return Problem(401, UNAUTHENTICATED, "Unauthenticated", detail,
                   headers={"WWW-Authenticate": challenge})
