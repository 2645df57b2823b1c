"""Naming, creating and removing the lab's network namespaces, and running commands in them."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from pyroute2 import netns

from netscand.lab.errors import LabError

PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
SUFFIX_RE = r"(?:scan|br|rt|rl|[hsx][0-9]+)"


def check_prefix(prefix: str) -> None:
    # No dash allowed: "nsd" must never match the namespaces of a prefix like "nsd-h1".
    if not PREFIX_RE.match(prefix):
        raise LabError(f"bad lab prefix {prefix!r}: use 1-12 lowercase letters or digits, starting with a letter")


def lab_namespaces(prefix: str) -> list[str]:
    """Every existing namespace that belongs to a lab with this prefix."""
    pattern = re.compile(rf"^{re.escape(prefix)}-{SUFFIX_RE}$")
    return sorted(name for name in netns.listnetns() if pattern.match(name))


def exists(name: str) -> bool:
    return name in netns.listnetns()


def is_mounted(name: str) -> bool:
    """False for a bare mount point left by a creation that was interrupted: it holds nothing."""
    try:
        return os.stat(os.path.join(netns.NETNS_RUN_DIR, name)).st_dev == os.stat("/proc/self/ns/net").st_dev
    except FileNotFoundError:
        return False


def create(name: str) -> None:
    try:
        netns.create(name)  # refuses an existing name: the mount point is created O_EXCL
    except OSError as exc:
        raise LabError(f"cannot create network namespace {name}: {exc}") from exc


def remove(name: str) -> None:
    try:
        netns.remove(name)
    except FileNotFoundError:
        pass


@contextmanager
def ns_fd(name: str) -> Iterator[int]:
    """An fd of the namespace, for IFLA_NET_NS_FD: veth peers are created straight into it."""
    fd = os.open(os.path.join(netns.NETNS_RUN_DIR, name), os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the block in another network namespace; sockets made there keep it after the block."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        netns.setns(name, flags=0)  # flags=0: never create a namespace by mistake
        try:
            yield
        finally:
            netns.setns(home, flags=0)
    finally:
        os.close(home)


def exec_argv(name: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", name, *argv]


def run_scripts(scripts: Mapping[str, tuple[str, str | None]], timeout: float = 30) -> None:
    """Run one `sh -e` script (with optional stdin) in each namespace, all at once.

    sysctl, ethtool and nft have no convenient pyroute2 equivalent, so they run as commands;
    running the namespaces in parallel keeps a 32-host lab quick to build.
    """
    procs = {
        name: subprocess.Popen(
            exec_argv(name, ["sh", "-ec", script]),
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for name, (script, _) in scripts.items()
    }
    errors = []
    for name, proc in procs.items():
        try:
            _, err = proc.communicate(scripts[name][1], timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            err = f"timed out after {timeout}s"
        if proc.returncode:
            errors.append(f"{name}: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")
    if errors:
        raise LabError("configuring namespaces failed: " + "; ".join(errors))
