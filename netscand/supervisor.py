"""The supervisor: forks every child, reaps and restarts them, and handles signals.

Modelled on gunicorn's arbiter: signal handlers only queue the signal number and poke a pipe; the
main loop takes signals off the queue and acts on them. It never runs an event loop or a thread,
so every fork (at boot or to replace a dead child) happens in a single-threaded process. It is
handed the functions its children run and never imports them.

It also speaks for the daemon to systemd (sd_notify): READY=1 once every child reports ready,
WATCHDOG=1 only while every child is alive and beating, RELOADING=1 and READY=1 around a reload
(SIGHUP, passed on to the children that reload and finished when each reports it has),
STOPPING=1, and a STATUS= line.
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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netscand.notify import Notifier

# A child that dies before it reported ready in that life (or, when it does not report, sooner
# than BOOT_GRACE after its start) failed to boot; BOOT_FAILURES such deaths in a row stop the
# whole daemon. One that dies after it was ready was killed by something it met while working
# (a scan's plan: the dispatcher fails a plan its workers keep dying on), not by the daemon's
# set-up, and is restarted whatever the count.
BOOT_GRACE = 2.0
BOOT_FAILURES = 3
STOP_TIMEOUT = 5.0
EXIT_BOOT_ERROR = 3
FRESH = 2.0  # a child that beat longer ago than this is not counted ready or healthy
TICK = 1.0  # longest sleep of the main loop
BUSY_TICK = 0.1  # ...while systemd waits for READY=1, at boot or during a reload


@dataclass
class ChildSpec:
    name: str
    target: Callable[[int], None]  # runs in the child with its index; returning means exit 0
    count: int = 1
    primary: bool = False  # when it exits, everything stops and its status is the daemon's
    heartbeat: Callable[[int], float | None] | None = None  # last beat (monotonic), if it beats
    ready: Callable[[int], int] | None = None  # pid that reported ready in the slot (0: none), if it reports
    # Reloads done and the last one's error, for a child that reloads: it is sent SIGHUP on a
    # reload, and counts its own boot as one (a child started meanwhile read the new config).
    reloads: Callable[[int], tuple[int, str]] | None = None
    # Passed SIGHUP on a reload once ready (its handler is in place by then), without reporting
    # back: the engine workers re-read the policy they enforce.
    hangup: bool = False


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

    def __init__(self, specs: list[ChildSpec], log: Callable[[str], None] | None = None,
                 notifier: Notifier | None = None, status: Callable[[], str] | None = None,
                 reloaded: Callable[[int, int, str], None] | None = None) -> None:
        """`status` adds to systemd's STATUS= line; `reloaded(requested, done, error)` is told
        of every reload asked for and finished."""
        self.children = [_Child(s, i) for s in specs for i in range(s.count)]
        self.log = log or (lambda msg: print(f"netscand: {msg}", file=sys.stderr))
        self.notifier = notifier
        self.status = status
        self.reloaded = reloaded
        self.queue: list[int] = []
        self.stopping = False
        self.exit_code = 0
        self.restarts = 0
        self._pipe_r, self._pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.ready_sent = False  # READY=1 told and no reload since
        # Reloads are counted by request (SIGHUP): the last request each reload served, and
        # `done`, the one told to systemd with READY=1.
        self.requested = self.done = self._finished = self._serving = 0
        self.reload_error = ""
        # In a reload: (report, index, reloads counted when it began) of each child that reloads.
        self._reloading: list[tuple[Callable[[int], tuple[int, str]], int, int]] | None = None
        self._last_status = ""
        self._next_ping = 0.0

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
                self._check_reload()
                self._tell_systemd()
        return self.exit_code

    def _queue_signal(self, signum: int, frame: object) -> None:
        if len(self.queue) < 16:
            self.queue.append(signum)

    def _sleep(self) -> None:
        timeout = BUSY_TICK if self._reloading is not None or not self.ready_sent else TICK
        if self.notifier and self.notifier.watchdog:
            timeout = min(timeout, max(self._next_ping - time.monotonic(), BUSY_TICK))
        try:
            ready, _, _ = select.select([self._pipe_r], [], [], timeout)
            if ready:
                while os.read(self._pipe_r, 64):
                    pass
        except (BlockingIOError, InterruptedError):
            pass

    def _handle(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            self.stop(128 + signum if signum != signal.SIGTERM else 0)
        elif signum == signal.SIGHUP and not self.stopping:
            for c in self.children:
                if c.spec.primary and c.pid:
                    self._signal(c, signal.SIGHUP)  # a one-shot scan's hangup is its primary's to decide
                elif c.spec.hangup and c.pid and c.spec.ready and c.spec.ready(c.index) == c.pid:
                    self._signal(c, signal.SIGHUP)
            self.requested += 1
            if self.ready_sent and self.notifier:
                self.notifier.reloading()
            self.ready_sent = False
            self._tell_reloaded()
            if self._reloading is None:
                self._begin_reload()
        # SIGCHLD: the loop reaps right after.

    def stop(self, code: int) -> None:
        """Ask every child to finish, then kill what is still there after STOP_TIMEOUT."""
        if self.stopping:
            return
        self.stopping = True
        self.exit_code = code
        if self.notifier:
            self.notifier.send("STOPPING=1")
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
            ready = child.spec.ready is not None and child.spec.ready(child.index) == pid
            child.pid = 0
            self._exited(child, os.waitstatus_to_exitcode(status), ready)
            if block:
                return

    def _exited(self, child: _Child, code: int, ready: bool) -> None:
        """`ready`: it had reported ready in the life that just ended."""
        name = f"{child.spec.name}[{child.index}]"
        if self.stopping:
            return
        if child.spec.primary:
            self.stop(code if code >= 0 else 128 - code)
            return
        self.log(f"{name} exited with {code}; restarting")
        reports = child.spec.ready is not None
        if not ready and (reports or time.monotonic() - child.started < BOOT_GRACE):
            child.boot_failures += 1
            if child.boot_failures >= BOOT_FAILURES:
                self.log(f"{name} keeps failing at boot; stopping")
                self.stop(EXIT_BOOT_ERROR)
                return
        else:
            child.boot_failures = 0
        self.restarts += 1
        self._spawn(child)

    def _healthy(self, c: _Child, now: float) -> bool:
        """Alive, ready (in this life: the pid it reported is its own) and beating."""
        if not c.pid or (c.spec.ready and c.spec.ready(c.index) != c.pid):
            return False
        beat = c.spec.heartbeat(c.index) if c.spec.heartbeat else None
        return beat is None or now - beat < FRESH

    # -- reloads ---------------------------------------------------------------------------------
    def _begin_reload(self) -> None:
        self._serving = self.requested
        self._reloading = []
        for c in self.children:
            if c.spec.reloads is None:
                continue
            self._reloading.append((c.spec.reloads, c.index, c.spec.reloads(c.index)[0]))
            # One still booting has no handler yet, and reads the current config as it boots.
            if c.pid and c.spec.ready and c.spec.ready(c.index) == c.pid:
                self._signal(c, signal.SIGHUP)

    def _check_reload(self) -> None:
        if self._reloading is None:
            return
        reports = [(report(index), base) for report, index, base in self._reloading]
        if any(count <= base for (count, _), base in reports):
            return
        self._finished = self._serving
        self.reload_error = "; ".join(error for (_, error), _ in reports if error)
        self._reloading = None
        if self.reload_error:
            self.log(f"reload failed, the previous settings stay: {self.reload_error}")
        if self.requested > self._finished:
            self._begin_reload()  # asked again meanwhile: that one may have read an older file

    # -- systemd -----------------------------------------------------------------------------------
    def _tell_systemd(self) -> None:
        now = time.monotonic()
        healthy = [self._healthy(c, now) for c in self.children]
        status = self._status(healthy)
        lines = [f"STATUS={status}"] if status != self._last_status else []
        self._last_status = status
        if not self.ready_sent and self._reloading is None and all(healthy):
            lines.insert(0, "READY=1")
            self.ready_sent = True
            self.done = self._finished
            self._tell_reloaded()
        if self.notifier and self.notifier.watchdog and now >= self._next_ping and all(healthy):
            lines.append("WATCHDOG=1")
            self._next_ping = now + self.notifier.watchdog / 2
        if lines and self.notifier:
            self.notifier.send(*lines)

    def _status(self, healthy: list[bool]) -> str:
        counts: dict[str, list[int]] = {}
        for c, ok in zip(self.children, healthy):
            count = counts.setdefault(c.spec.name, [0, 0])
            count[0] += ok
            count[1] += 1
        parts = ["ready: " + ", ".join(f"{name} {ok}/{n}" for name, (ok, n) in counts.items())]
        if self.status:
            parts.append(self.status())
        if self.reload_error:
            parts.append(f"last reload failed: {self.reload_error}")
        return "; ".join(parts)

    def _tell_reloaded(self) -> None:
        if self.reloaded:
            self.reloaded(self.requested, self.done, self.reload_error)

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
