"""The REST API: one Starlette app served on the Unix socket and on the TLS listener.

`create_app` builds the app; `listener` wraps it once per listener so a request knows which one
it came in on (the Unix socket is trusted, TCP needs a bearer token).
"""

from netscand.api.app import create_app
from netscand.api.listener import listener

__all__ = ["create_app", "listener"]
