"""Writing a file whole without following links, for directories another user may write to.

The daemon's state directory belongs to the daemon's user; whoever runs as that user could put a
symbolic link where the daemon (or root, running a command) is about to write. O_CREAT|O_EXCL
with O_NOFOLLOW never opens through a link, and a rename replaces a link rather than its target.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_whole(path: Path | str, data: bytes, mode: int, dir_fd: int | None = None) -> None:
    """Replace `path` (relative to `dir_fd` when given) with `data`, with exactly `mode` and the
    owner of the file it replaces (root renewing the daemon's certificate leaves it the daemon's);
    a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)  # left by a write that was cut short; unlink never follows
    try:
        old: os.stat_result | None = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        old = None
    fd = os.open(tmp, _NEW, mode, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away
        if old is not None and stat.S_ISREG(old.st_mode) and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
            with contextlib.suppress(PermissionError):  # only root may give a file away
                os.fchown(fd, old.st_uid, old.st_gid)
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
    finally:
        os.close(fd)
    os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
