"""The supervisor tells a child that cannot boot from one that died while working: only deaths
before the child reported ready in that life stop the daemon. Real forks of a real Supervisor;
the children report ready through a shared page, as the engine workers do."""

from __future__ import annotations

import mmap
import os
import signal
import struct
import time

from netscand.supervisor import BOOT_FAILURES, BOOT_GRACE, EXIT_BOOT_ERROR, ChildSpec, Supervisor

ROW = struct.Struct("iiI")  # pid that reported ready (0: none), ready flag, lives started


class Page:
    def __init__(self) -> None:
        self.map = mmap.mmap(-1, 64, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)

    def read(self) -> tuple[int, int, int]:
        return ROW.unpack_from(self.map, 0)

    def write(self, pid: int, ready: int, lives: int) -> None:
        ROW.pack_into(self.map, 0, pid, ready, lives)

    def ready(self, index: int) -> int:
        pid, ready, _ = self.read()
        return pid if ready else 0


def run_supervisor(page: Page, reports_ready: bool, lives_s: float = 0.05) -> int:
    """Fork a supervisor whose one child dies `lives_s` after it starts, every life; its pid."""

    def child(index: int) -> None:
        _, _, lives = page.read()
        page.write(os.getpid(), 0, lives + 1)
        if reports_ready:
            page.write(os.getpid(), 1, lives + 1)
        time.sleep(lives_s)
        raise SystemExit(1)

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = Supervisor([ChildSpec("worker", child, ready=page.ready)], log=lambda m: None).run()
        finally:
            os._exit(code)
    return pid


def wait(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    return None


def test_a_child_dying_after_it_was_ready_is_restarted_without_end() -> None:
    page = Page()
    pid = run_supervisor(page, reports_ready=True)
    try:
        deadline = time.monotonic() + 20
        while page.read()[2] < 3 * BOOT_FAILURES and time.monotonic() < deadline:
            assert wait(pid, 0.05) is None, "the supervisor stopped"
        assert page.read()[2] >= 3 * BOOT_FAILURES
    finally:
        os.kill(pid, signal.SIGTERM)
    assert wait(pid, 10) == 0


def test_a_child_dying_before_it_was_ready_stops_the_daemon_after_a_few_tries() -> None:
    page = Page()
    # Longer than BOOT_GRACE: a child that reports readiness is judged by it, not by how long it lived.
    pid = run_supervisor(page, reports_ready=False, lives_s=BOOT_GRACE + 0.2)
    code = wait(pid, 30)
    if code is None:
        os.kill(pid, signal.SIGKILL)
    assert code == EXIT_BOOT_ERROR
    assert page.read()[2] == BOOT_FAILURES


def test_a_reload_passes_the_hangup_on_to_a_ready_child_that_asks_for_it() -> None:
    page = Page()

    def child(index: int) -> None:
        # As an engine worker: its handler in place, then ready; it counts the hangups it hears.
        heard = [0]

        def on_hup(signum: int, frame: object) -> None:
            heard[0] += 1
            page.write(os.getpid(), 1, heard[0])

        signal.signal(signal.SIGHUP, on_hup)
        page.write(os.getpid(), 1, 0)
        while True:
            time.sleep(0.05)

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = Supervisor([ChildSpec("worker", child, ready=page.ready, hangup=True)], log=lambda m: None).run()
        finally:
            os._exit(code)
    try:
        deadline = time.monotonic() + 10
        while not page.ready(0) and time.monotonic() < deadline:
            time.sleep(0.02)
        child_pid = page.ready(0)
        assert child_pid
        os.kill(pid, signal.SIGHUP)
        while page.read()[2] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert page.read() == (child_pid, 1, 1)  # heard once, and still the same life
    finally:
        os.kill(pid, signal.SIGTERM)
    assert wait(pid, 10) == 0
