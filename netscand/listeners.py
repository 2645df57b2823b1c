"""The daemon binds its own listening sockets before forking, then hands them to uvicorn.

Binding the Unix socket ourselves (umask, then chmod/chown) means it never exists with a wider
mode than configured, which uvicorn's own uds binding can't promise.
"""

from __future__ import annotations

import grp
import os
import socket
from pathlib import Path

BACKLOG = 1024


class ListenError(Exception):
    pass


def bind_unix(path: str, mode: int, group: str, owner: int = -1) -> socket.socket:
    """`owner` (a uid) is given the socket, and its directory when made here: a daemon that then
    switches to that user can still remove them when it stops."""
    p = Path(path)
    if not p.parent.exists():
        p.parent.mkdir(mode=0o755, parents=True)
        os.chown(p.parent, owner, -1)
    if p.is_socket():
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(path)
        except OSError:
            p.unlink()  # a stale socket left by a daemon that died
        else:
            raise ListenError(f"{path} is in use: is another netscand running?")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot bind {path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        gid = -1
    os.chown(path, owner, gid)
    os.chmod(path, mode)
    sock.listen(BACKLOG)
    return sock


def bind_tcp(listen: str) -> socket.socket:
    host, port = listen.rsplit(":", 1)
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {listen}: {exc.strerror}") from None
    sock.listen(BACKLOG)
    return sock
