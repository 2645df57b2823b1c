"""Least privilege: the daemon runs as its own user with CAP_NET_RAW alone, which only the engine
workers use; the control process (API, orchestrator, profiling) keeps no capability at all.

Started by systemd (User=netscand, AmbientCapabilities=CAP_NET_RAW) it already is that user.
Started by root by hand, it binds its sockets and then switches. A missing user is an error, not
a reason to stay root: falling back would quietly run the API and the banner parsers as root.

Root touches as little as it can, and nothing through a link: what the daemon's user owns (its
state directory, the socket's directory) that user could fill with symbolic links to anywhere, so
root opens what it hands over without following links, and makes the socket as that user.

Capabilities are set through ctypes (glibc's capget/capset and prctl): a few lines, where the
Python bindings of libcap are either unmaintained or a C extension to build.
"""

from __future__ import annotations

import contextlib
import ctypes
import grp
import os
import pwd
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

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


def current() -> Account:
    """The account this process runs as: the daemon's own when systemd started it as its user."""
    uid = os.geteuid()
    return Account(user_name(uid), uid, os.getegid())


def check_parents(directory: Path, acct: Account) -> None:
    """Refuse, naming it, a directory above `directory` that `acct` may not enter: checked before
    anything is made or handed over, so a refused start leaves nothing changed. Parents still
    missing are the ones mkdir makes; the full check after that catches a umask that closes them."""
    _refuse(directory, unreadable(acct, [directory], _first_closed_parent), acct)


def check_reachable(directory: Path, acct: Account) -> None:
    """Owning the directory is not enough: a parent the user may not enter (a root-only
    mkdtemp, a home directory) would fail the first open after the switch, naming a file and
    not the directory in the way. Refuse now, naming it."""
    _refuse(directory, unreadable(acct, [directory]), acct)


def _refuse(directory: Path, found: tuple[Path, str] | None, acct: Account) -> None:
    if found is not None:
        raise PrivilegeError(f"the daemon user '{acct.name}' cannot reach its state directory {directory}: "
                             f"{found[1]}; give it access (chmod o+x, or an ACL) or choose another state directory")


def own(directory: Path, names: Sequence[str], acct: Account) -> None:
    """Hand what the daemon keeps (its state directory, and `names` in it: the database, the
    generated key) to its user, as systemd's StateDirectory= does, so a state directory root
    used before stays usable. The caller resolves `directory` and checks its parents first
    (check_parents), so that a refused start has handed nothing over.

    Every name is opened from the directory with O_NOFOLLOW, component by component, and
    changed through its descriptor: a link the user put there is left alone, never followed.
    A regular file with more than one link is left too: it may be a hard link to a file of
    root's (where fs.protected_hardlinks is off)."""
    top = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _hand_over(top, acct)
        for name in names:
            _own_at(top, PurePath(name).parts, acct)
    finally:
        os.close(top)


def _own_at(dir_fd: int, parts: tuple[str, ...], acct: Account) -> None:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(parts[0], flags, dir_fd=dir_fd)
    except OSError:
        return  # missing, a link (ELOOP), a socket (ENXIO): nothing root made to take over
    try:
        if len(parts) > 1:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                _own_at(fd, parts[1:], acct)
        else:
            _hand_over(fd, acct)
    finally:
        os.close(fd)


def _hand_over(fd: int, acct: Account) -> None:
    st = os.fstat(fd)
    if not (stat.S_ISDIR(st.st_mode) or (stat.S_ISREG(st.st_mode) and st.st_nlink == 1)):
        return
    if (st.st_uid, st.st_gid) != (acct.uid, acct.gid):
        os.fchown(fd, acct.uid, acct.gid)


@contextlib.contextmanager
def acting_as(acct: Account, gid: int) -> Iterator[None]:
    """Make files as `acct` (owner) and `gid` (group) in the block: effective ids only, root
    comes back after it. What root would have to chown after making it in a directory the user
    owns, it does not make at all: the user could swap it for a link between the two steps."""
    uid, old_gid = os.geteuid(), os.getegid()
    os.setegid(gid)
    os.seteuid(acct.uid)
    try:
        yield
    finally:
        os.seteuid(uid)
        os.setegid(old_gid)


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


Check = Callable[[Sequence[Path]], tuple[Path, str] | None]


def unreadable(acct: Account, paths: Sequence[Path], check: Check | None = None) -> tuple[Path, str] | None:
    """The first of `paths` that `acct` could not read once switched to (or that fails `check`),
    and why; None if it can read them all. Asked of the kernel by a child that has become `acct`
    (with the groups the switch gives it): ACLs and every other rule count as they will after
    the switch."""
    check = check or _first_unreadable
    if os.geteuid() == acct.uid:
        return check(paths)
    if os.geteuid() != 0:
        raise PrivilegeError(f"only root can tell what user '{acct.name}' may read")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(read_end)
            os.setgroups(os.getgrouplist(acct.name, acct.gid))
            os.setresgid(acct.gid, acct.gid, acct.gid)
            os.setresuid(acct.uid, acct.uid, acct.uid)
            found = check(paths)
            if found:
                os.write(write_end, "\0".join((str(found[0]), found[1])).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise PrivilegeError(f"could not check what user '{acct.name}' can read")
    if not answer:
        return None
    path, why = answer.split("\0", 1)
    return Path(path), why


def _first_unreadable(paths: Sequence[Path]) -> tuple[Path, str] | None:
    searchable: dict[Path, bool] = {}
    for path in paths:
        closed = _closed_parent(path, searchable)
        if closed is not None:
            return path, f"it may not enter {closed} ({_describe_parent(closed)})"
        try:
            is_dir = stat.S_ISDIR(os.stat(path).st_mode)
        except OSError as exc:  # a link into a directory closed to it, say: not followed here
            return path, f"it may not read it ({exc.strerror})"
        if not os.access(path, os.R_OK | os.X_OK if is_dir else os.R_OK):
            return path, f"it may not read it ({_describe(path)})"
    return None


def _first_closed_parent(paths: Sequence[Path]) -> tuple[Path, str] | None:
    searchable: dict[Path, bool] = {}
    for path in paths:
        closed = _closed_parent(path, searchable, stop_at_missing=True)
        if closed is not None:
            return path, f"it may not enter {closed} ({_describe_parent(closed)})"
    return None


def _closed_parent(path: Path, searchable: dict[Path, bool], stop_at_missing: bool = False) -> Path | None:
    """The first directory above `path`, from / down, that may not be entered."""
    for parent in reversed(path.parents):
        if stop_at_missing and not os.path.lexists(parent):
            return None  # from here down mkdir makes them
        if parent not in searchable:
            searchable[parent] = os.access(parent, os.X_OK)
        if not searchable[parent]:
            return parent
    return None


def _describe_parent(path: Path) -> str:
    return "not a directory" if os.path.exists(path) and not os.path.isdir(path) else _describe(path)


def _describe(path: Path) -> str:
    try:
        st = path.stat()
    except OSError as exc:
        return exc.strerror or str(exc)
    return f"mode {stat.S_IMODE(st.st_mode):04o}, owner {user_name(st.st_uid)}:{group_name(st.st_gid)}"


def user_name(uid: int) -> str:
    """The account's name, or the number when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    """The group's name, or the number when it has none."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


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
