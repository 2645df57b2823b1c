"""Everything the daemon will import or read from disk, loaded before it switches to its user.

Python imports lazily: some modules only on first use (datetime.strptime imports _strptime,
importlib.resources.files imports importlib.readers, a hostname lookup the idna codec, uvicorn its
lifespan and protocol classes), and our package data is read when a scan first needs it. After
the switch those reads happen as the daemon's user, who may not be able to read the interpreter
(a pyenv under /root) or the package, and after a package upgrade they would load another
version's files into a running daemon. So the supervisor loads them all first; its children are
forked and inherit them. The list of stdlib and third-party modules below was found by running
the daemon with its Python trees hidden after start (tests/daemon/test_privileges.py does so),
not guessed.

What cannot be loaded ahead (netaddr reads its OUI registry file at each lookup) still has to be
readable, and so does the interpreter: check() refuses to start, in one line, when the daemon's
user could not read one of them.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

import netscand
from netscand import privileges
from netscand.profiling import osguess
from netscand.scan import ports

# Imported lazily by the stdlib or our dependencies, on code paths the daemon takes.
LAZY_MODULES = (
    "_strptime",  # datetime.strptime (scan timestamps)
    "importlib.readers",  # importlib.resources.files (package data)
    "encodings.idna",  # socket.getaddrinfo and ssl with a str host name
    "netaddr.eui.ieee",  # netaddr's OUI registry index, on the first vendor lookup
    "uvicorn.lifespan.off",  # uvicorn.Config.load, in each control process (a restarted one too)
    "numpy.ma",  # np.unique, in a worker recording a block's RSTs to more than one shard (rstbatch)
)
# The lab is for tests and demos, the daemon never runs it; __main__ would run the CLI.
SKIPPED = ("netscand.lab", "netscand.__main__")


def load() -> None:
    for name in LAZY_MODULES:
        importlib.import_module(name)
    _import_all(netscand.__path__, "netscand.")
    # Package data, each cached where it is read (functools.cache): one call loads it for good.
    ports.top_ports(1)
    ports.service_name(0)
    osguess.guess([])


def _import_all(path: Iterable[str], prefix: str) -> None:
    for module in pkgutil.iter_modules(path, prefix):
        if module.name not in SKIPPED:
            imported = importlib.import_module(module.name)
            if module.ispkg:
                _import_all(imported.__path__, module.name + ".")


def needed() -> list[Path]:
    """What the daemon reads from disk after the switch, or would if a module were not loaded:
    the standard library and this package first (the likeliest to name in a refusal), then the
    directory and file of every module loaded, then the interpreter."""
    first = [Path(sysconfig.get_path("stdlib")), Path(netscand.__file__).parent]
    loaded = {Path(f) for m in list(sys.modules.values()) if isinstance(f := getattr(m, "__file__", None), str)}
    files = sorted(Path(os.path.realpath(f)) for f in loaded if f.exists())
    dirs = sorted({f.parent for f in files})
    executable = Path(os.path.realpath(sys.executable))
    return [*(Path(os.path.realpath(p)) for p in first), *dirs, *files, executable]


def refusal(acct: privileges.Account) -> str | None:
    """Why `acct` could not run netscand after the switch, in one line; None when it could."""
    found = privileges.unreadable(acct, needed())
    if found is None:
        return None
    path, why = found
    return (f"the daemon user '{acct.name}' cannot read {path} (needed to run netscand after the switch): "
            f"{why}; run netscand from a Python installation that user can read, or give it access")


def check(acct: privileges.Account) -> None:
    """Raises PrivilegeError when `acct` could not read what load() left to read."""
    why = refusal(acct)
    if why:
        raise privileges.PrivilegeError(why)
