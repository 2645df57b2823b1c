"""The daemon binds its own listening sockets before forking, then hands them to uvicorn.

Binding the Unix socket ourselves (umask, then group) means it never exists with a wider mode
than configured, which uvicorn's own uds binding can't promise. Started by root, the daemon makes
the socket as its own user (privileges.acting_as) when the socket's directory is writable by
anyone but root (its own RuntimeDirectory=, say): a chown by root after the bind could be sent
through a link swapped in meanwhile. In a directory only root may write, root binds and chowns.
"""

from __future__ import annotations

import grp
import os
import resource
import socket
from pathlib import Path

from netscand import privileges

BACKLOG = 1024
# Descriptors besides the API's connections: the database, shared memory, the supervisor's pipes,
# and the sockets of service detection and name queries (64 each at most).
RESERVED_FDS = 256


class ListenError(Exception):
    pass


def bind_unix(path: str, mode: int, group: str, acct: privileges.Account | None = None) -> socket.socket:
    """`acct` (the user a daemon started by root switches to) owns the socket, and the directory
    made for it when missing: once switched, the daemon can still remove them when it stops."""
    p = Path(path)
    if not p.parent.exists():
        p.parent.mkdir(mode=0o755, parents=True)
        if acct is not None:
            # Not following a link: the parent of a new directory may be the user's too.
            os.chown(p.parent, acct.uid, -1, follow_symlinks=False)
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        gid = acct.gid if acct else -1
    if acct is None or _root_only(p.parent):
        # Nobody but root can put a link there: root makes the socket, then gives it away.
        sock = _bind(p, mode, "")
        os.chown(path, acct.uid if acct else -1, gid, follow_symlinks=False)
    else:
        with privileges.acting_as(acct, gid):
            sock = _bind(p, mode, f" (user '{acct.name}' makes it, and must be able to write to {p.parent})")
    sock.listen(BACKLOG)
    return sock


def _root_only(directory: Path) -> bool:
    st = directory.stat()
    return st.st_uid == 0 and not st.st_mode & 0o022


def _bind(p: Path, mode: int, who: str) -> socket.socket:
    if p.is_socket():
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(str(p))
        except OSError:
            try:
                p.unlink()  # a stale socket left by a daemon that died
            except OSError as exc:
                raise ListenError(f"cannot remove the stale socket {p}: {exc.strerror}{who}") from None
        else:
            raise ListenError(f"{p} is in use: is another netscand running?")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777 & ~mode)  # the socket is made with `mode`, never wider
    try:
        sock.bind(str(p))
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot bind {p}: {exc.strerror}{who if isinstance(exc, PermissionError) else ''}") from None
    finally:
        os.umask(old)
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


def reserve_descriptors(connections: int) -> None:
    """Make room under RLIMIT_NOFILE for `connections` open at once and RESERVED_FDS besides:
    the soft limit is raised as far as needed (1024 is a common default), never past the hard one."""
    need = connections + RESERVED_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    shortfall = (f"the connection limits (daemon.max_connections, daemon.max_unix_connections) need {need} "
                 "open files")
    if hard != resource.RLIM_INFINITY and hard < need:
        raise ListenError(f"{shortfall}, and RLIMIT_NOFILE allows {hard}: raise it (systemd: LimitNOFILE=) "
                          "or lower the limits")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    except (OSError, ValueError) as exc:
        raise ListenError(f"{shortfall}, and RLIMIT_NOFILE ({soft}) could not be raised: {exc}") from None
