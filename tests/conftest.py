"""Shared fixtures. The lab fixtures need root and fail (never skip) without it: CI runs as root."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from netscand.lab import DEFAULT_STATE_DIR, Lab
from netscand.lab.harness import lab_up

# Not the CLI's default "nsd", so a test run never tears down a lab someone started by hand;
# the prefixes let the session lab, the hostile lab and a test's own lab exist side by side.
SESSION_PREFIX = "nst"
FACTORY_PREFIX = "nsl"
HOSTILE_PREFIX = "nsh"
DETECTOR_PREFIX = "nsdt"
LOCK_FILE = DEFAULT_STATE_DIR / "pytest.lock"
BENCH_LOCK_FILE = DEFAULT_STATE_DIR / "bench.lock"
LOCK_WAIT_S = 900

LabFactory = Callable[..., AbstractContextManager[Lab]]


@pytest.fixture(scope="session")
def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root: they build network namespaces (CI runs them as root)", pytrace=False)


@pytest.fixture
def netns(require_root: None) -> Iterator[str]:
    """A throwaway network namespace with only loopback (up): nothing in it can reach a network."""
    name = f"t-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@contextlib.contextmanager
def flocked(path: Path, what: str) -> Iterator[None]:
    """`path` locked for the block, waiting up to LOCK_WAIT_S for whoever holds it (`what`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        deadline = time.monotonic() + LOCK_WAIT_S
        waiting = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{what} held {path} for {LOCK_WAIT_S}s", pytrace=False)
                if not waiting:
                    print(f"\nwaiting for {what} to release {path}", file=sys.__stderr__)
                    waiting = True
                time.sleep(0.5)
        yield  # the lock goes with the file, also when the run is killed


@pytest.fixture(scope="session")
def lab_lock(require_root: None) -> Iterator[None]:
    """Test runs on one machine take turns with the lab: each would tear down the other's labs."""
    with flocked(LOCK_FILE, "another test run"):
        yield


@pytest.fixture
def bench_lock(lab_lock: None) -> Iterator[None]:
    """A bench run by a test takes turns with benches run by hand (under `flock BENCH_LOCK_FILE`,
    bench/README.md): both build the bench's lab under the same prefix, each tearing down the
    other's. Taken after lab_lock, which a bench run by hand never takes: no deadlock."""
    with flocked(BENCH_LOCK_FILE, "a bench run by hand"):
        yield


@pytest.fixture(scope="session")
def lab(lab_lock: None) -> Iterator[Lab]:
    """One lab shared by the whole session: 8 imitation hosts (seed 1, no impairment) and the
    servers running real daemons."""
    with lab_up(hosts=8, seed=1, prefix=SESSION_PREFIX, servers=True) as built:
        yield built


@pytest.fixture(scope="session")
def hostile_lab(lab_lock: None) -> Iterator[Lab]:
    """The session lab's hosts (8 imitation hosts, seed 1, and the servers) plus the hostile
    hosts (netscand/lab/hostile.py), in a lab of their own: their frames and tarpit must not
    reach the tests that use `lab`."""
    with lab_up(hosts=8, seed=1, prefix=HOSTILE_PREFIX, servers=True, hostile=True) as built:
        yield built


@pytest.fixture(scope="session")
def detector_lab(lab_lock: None) -> Iterator[Lab]:
    """4 imitation hosts (seed 1), every one watched by scanlogd and psad (netscand/lab/detectors.py),
    in a lab of their own: only the scans of the tests that use it reach the detectors' logs.
    Read what they flagged with detectors.mark(lab) and detectors.alerts(lab, since=...)."""
    with lab_up(hosts=4, seed=1, prefix=DETECTOR_PREFIX, detectors=True) as built:
        yield built


@pytest.fixture
def lab_factory(lab_lock: None) -> Iterator[LabFactory]:
    """`with lab_factory(loss_pct=20) as lab:` builds a lab of the test's own (prefix "nsl")."""
    built: list[Lab] = []

    @contextlib.contextmanager
    def make_lab(**kwargs: Any) -> Iterator[Lab]:
        kwargs.setdefault("prefix", FACTORY_PREFIX)
        with lab_up(**kwargs) as made:
            built.append(made)
            yield made

    try:
        yield make_lab
    finally:
        for made in built:
            made.down()  # idempotent: covers a test that left the with-block by an odd path
