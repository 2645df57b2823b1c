"""The one narrow interface every probe type implements, and what its replies carry."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from netscand.engine.plan import Plan


class Answer(NamedTuple):
    host: int  # index into plan.hosts
    port: int  # index into plan.ports
    state: int  # shm.S_* value
    tick: int  # send tick echoed by the reply, or -1 when the protocol can't carry one
    ttl: int = 0
    win: int = 0
    flags: int = 0
    ipid: int = 0
    opts: bytes = b""
    mac: bytes = b""


class Probe(Protocol):
    plan: Plan

    def frame(self, host: int, port: int, tick: int) -> bytearray: ...

    def answer(self, frame: bytes) -> Answer | None: ...

