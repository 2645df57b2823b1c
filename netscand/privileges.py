"""Least privilege: the daemon runs as its own user with CAP_NET_RAW alone, which only the engine
workers use; the control process (API, orchestrator, profiling) keeps no capability at all.

Started by systemd (User=netscand, AmbientCapabilities=CAP_NET_RAW) it already is that user.
Started by root by hand, it binds its sockets and then switches. A missing user is an error, not
a reason to stay root: falling back would quietly run the API and the banner parsers as root.

Capabilities are set through ctypes (glibc's capget/capset and prctl): a few lines, where the
Python bindings of libcap are either unmaintained or a C extension to build.
"""

from __future__ import annotations

import ctypes
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

CAP_NET_RAW = 13
_PR_SET_KEEPCAPS = 8
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_CAPABILITY_VERSION_3 = 0x20080522  # 64-bit sets, as two 32-bit halves

_libc = ctypes.CDLL(None, use_errno=True)


class PrivilegeError(Exception):
    pass


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def account(name: str) -> Account | None:
    """The account to switch to, or None when not started as root (nothing to switch from)."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise PrivilegeError(
            f"user '{name}' does not exist: create it (useradd --system --user-group --no-create-home "
            f"--shell /usr/sbin/nologin {name}) or name another in daemon.user") from None
    if pw.pw_uid == 0:
        raise PrivilegeError(f"daemon.user '{name}' is root: name an unprivileged account")
    return Account(name, pw.pw_uid, pw.pw_gid)


def own(paths: list[Path], acct: Account) -> None:
    """Hand what the daemon keeps (state directory, database, generated key) to its user, as
    systemd's StateDirectory= does, so a state directory root used before stays usable."""
    for path in paths:
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if (st.st_uid, st.st_gid) != (acct.uid, acct.gid):
            os.lchown(path, acct.uid, acct.gid)


def switch(acct: Account | None) -> bool:
    """Become `acct` keeping CAP_NET_RAW, or, when already unprivileged, keep at most CAP_NET_RAW
    of what we were given. Either way nothing is inheritable or ambient (children are forked,
    never exec'd) and no_new_privs is set. Returns whether CAP_NET_RAW was kept."""
    if acct is not None:
        # The bounding set can only shrink while CAP_SETPCAP is effective: first, as root.
        for cap in range(int(Path("/proc/sys/kernel/cap_last_cap").read_text()) + 1):
            if cap != CAP_NET_RAW:
                _prctl(_PR_CAPBSET_DROP, cap)
        _prctl(_PR_SET_KEEPCAPS, 1)  # or setresuid empties the permitted set too
        os.initgroups(acct.name, acct.gid)  # the user's own groups, as systemd's User= gives
        os.setresgid(acct.gid, acct.gid, acct.gid)
        os.setresuid(acct.uid, acct.uid, acct.uid)
        _prctl(_PR_SET_KEEPCAPS, 0)
    keep = _permitted() & (1 << CAP_NET_RAW)
    _capset(keep, keep, 0)  # an empty inheritable set empties the ambient set with it
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    return bool(keep)


def drop_all() -> None:
    """For a process that parses what strangers send: no capability, and no way to gain one."""
    _capset(0, 0, 0)
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)


def _prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)),
           f"prctl({option})")


def _permitted() -> int:
    header, data = _Header(_CAPABILITY_VERSION_3, 0), (_Data * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    return data[0].permitted | data[1].permitted << 32


def _capset(effective: int, permitted: int, inheritable: int) -> None:
    header, data = _Header(_CAPABILITY_VERSION_3, 0), (_Data * 2)()
    for half, shift in ((0, 0), (1, 32)):
        data[half].effective = effective >> shift & 0xFFFFFFFF
        data[half].permitted = permitted >> shift & 0xFFFFFFFF
        data[half].inheritable = inheritable >> shift & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def _check(result: int, call: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{call}: {os.strerror(err)}")
