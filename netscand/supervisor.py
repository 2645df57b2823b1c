"""The supervisor: forks every child, reaps and restarts them, and handles signals.

Modelled on gunicorn's arbiter: signal handlers only queue the signal number and poke a pipe; the
main loop takes signals off the queue and acts on them. It never runs an event loop or a thread,
so every fork (at boot or to replace a dead child) happens in a single-threaded process. It is
handed the functions its children run and never imports them.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

BOOT_GRACE = 2.0  # a child that dies sooner than this after its start failed to boot
BOOT_FAILURES = 3  # ...and this many such deaths in a row stop the whole daemon
STOP_TIMEOUT = 5.0
EXIT_BOOT_ERROR = 3


@dataclass
class ChildSpec:
    name: str
    target: Callable[[int], None]  # runs in the child with its index; returning means exit 0
    count: int = 1
    primary: bool = False  # when it exits, everything stops and its status is the daemon's
    heartbeat: Callable[[int], float | None] | None = None  # last beat (monotonic), if it beats


@dataclass
class _Child:
    spec: ChildSpec
    index: int
    pid: int = 0
    started: float = 0.0
    boot_failures: int = 0


class Supervisor:
    SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
    HEARTBEAT_TIMEOUT = 10.0

    def __init__(self, specs: list[ChildSpec], log: Callable[[str], None] | None = None) -> None:
        self.children = [_Child(s, i) for s in specs for i in range(s.count)]
        self.log = log or (lambda msg: print(f"netscand: {msg}", file=sys.stderr))
        self.queue: list[int] = []
        self.stopping = False
        self.exit_code = 0
        self.restarts = 0
        self._pipe_r, self._pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # -- main loop ---------------------------------------------------------------------------
    def run(self) -> int:
        for sig in self.SIGNALS:
            signal.signal(sig, self._queue_signal)
        signal.set_wakeup_fd(self._pipe_w, warn_on_full_buffer=False)
        for child in self.children:
            self._spawn(child)
        while any(c.pid for c in self.children):
            if self.queue:
                self._handle(self.queue.pop(0))
            else:
                self._sleep()
            self._reap()
            if not self.stopping:
                self._check_heartbeats()
        return self.exit_code

    def _queue_signal(self, signum: int, frame: object) -> None:
        if len(self.queue) < 16:
            self.queue.append(signum)

    def _sleep(self) -> None:
        try:
            ready, _, _ = select.select([self._pipe_r], [], [], 1.0)
            if ready:
                while os.read(self._pipe_r, 64):
                    pass
        except (BlockingIOError, InterruptedError):
            pass

    def _handle(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            self.stop(128 + signum if signum != signal.SIGTERM else 0)
        elif signum == signal.SIGHUP:
            for c in self.children:
                if c.spec.primary and c.pid:
                    os.kill(c.pid, signal.SIGHUP)
        # SIGCHLD: the loop reaps right after.

    def stop(self, code: int) -> None:
        """Ask every child to finish, then kill what is still there after STOP_TIMEOUT."""
        if self.stopping:
            return
        self.stopping = True
        self.exit_code = code
        for c in self.children:
            if c.pid:
                self._signal(c, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(c.pid for c in self.children) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.02)
        for c in self.children:
            if c.pid:
                self._signal(c, signal.SIGKILL)
        while any(c.pid for c in self.children):
            self._reap(block=True)

    # -- children ------------------------------------------------------------------------------
    def _spawn(self, child: _Child) -> None:
        pid = os.fork()
        if pid:
            child.pid, child.started = pid, time.monotonic()
            return
        code = 0
        try:
            signal.set_wakeup_fd(-1)
            for sig in self.SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            os.close(self._pipe_r)
            os.close(self._pipe_w)
            _set_name(f"nsd {child.spec.name} {child.index}")
            child.spec.target(child.index)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _signal(self, child: _Child, sig: int) -> None:
        try:
            os.kill(child.pid, sig)
        except ProcessLookupError:
            pass

    def _reap(self, block: bool = False) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = next((c for c in self.children if c.pid == pid), None)
            if child is None:
                continue
            child.pid = 0
            self._exited(child, os.waitstatus_to_exitcode(status))
            if block:
                return

    def _exited(self, child: _Child, code: int) -> None:
        name = f"{child.spec.name}[{child.index}]"
        if self.stopping:
            return
        if child.spec.primary:
            self.stop(code if code >= 0 else 128 - code)
            return
        self.log(f"{name} exited with {code}; restarting")
        if time.monotonic() - child.started < BOOT_GRACE:
            child.boot_failures += 1
            if child.boot_failures >= BOOT_FAILURES:
                self.log(f"{name} keeps failing at boot; stopping")
                self.stop(EXIT_BOOT_ERROR)
                return
        else:
            child.boot_failures = 0
        self.restarts += 1
        self._spawn(child)

    def _check_heartbeats(self) -> None:
        now = time.monotonic()
        for c in self.children:
            beat = c.spec.heartbeat(c.index) if c.spec.heartbeat and c.pid else None
            if beat is not None and now - max(beat, c.started) > self.HEARTBEAT_TIMEOUT:
                self.log(f"{c.spec.name}[{c.index}] missed its heartbeat; killing it")
                self._signal(c, signal.SIGKILL)


def _set_name(name: str) -> None:
    """Name the process as ps, top and /proc/PID/comm show it (15 bytes at most)."""
    PR_SET_NAME = 15
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass
