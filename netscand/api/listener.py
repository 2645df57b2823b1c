"""Tags each request with the listener it arrived on; the daemon wraps the app once per listener.

The tag is what separates trusted requests (the Unix socket: being able to open it is the
authorization, like docker.sock) from TCP ones that must carry a token, so it lives in its own
scope key that nothing a client sends can set.
"""

from __future__ import annotations

from typing import Literal

from starlette.types import ASGIApp, Receive, Scope, Send

LISTENER_KEY = "netscand.listener"
# Optional: the daemon may put the Unix peer's credentials here ({"uid": .., "pid": ..}, from
# SO_PEERCRED); the access log records them when present.
PEER_KEY = "netscand.peer"

Kind = Literal["unix", "tcp"]
KINDS: tuple[Kind, ...] = ("unix", "tcp")


def listener(app: ASGIApp, kind: Kind) -> ASGIApp:
    """`app` as served on one listener: every http scope carries `kind` under LISTENER_KEY."""
    if kind not in KINDS:
        raise ValueError(f"listener kind must be one of {KINDS}, not {kind!r}")

    async def tagged(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            # A copy, so the server's own scope dict is left as it made it.
            scope = {**scope, LISTENER_KEY: kind}
        await app(scope, receive, send)

    return tagged


def listener_of(scope: Scope) -> Kind:
    """The listener a request came from; an untagged request counts as TCP (fail closed)."""
    return "unix" if scope.get(LISTENER_KEY) == "unix" else "tcp"
