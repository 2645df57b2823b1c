"""A worker's intake of plans: reads the plan slots, admits or refuses each plan under the
policy (guard.py), and opens the sockets of an admitted plan's interface through a Link.

The policy is read again at start, on a reload (SIGHUP) and before any refusal, and each reading
sets the worker's rate ceiling. All of it runs per plan, never per packet: the loop asks every
turn, but a plan slot whose generation has not changed costs one read of that generation.

An interface's transmitter and receiver open together on its first plan: the transmitter first,
and neither is kept unless both open (a receiver kept alone would stay in the fanout group,
taking its share of the other workers' replies for nothing). The receive filter takes the
replies of every probe type to every plan slot's source ports (a plan's replies are told from
another's by its own), built once; and, for the live plans that send from a source port range
of their own (probes/tcp_syn_kernel.py), their probe types' range_replies to the span of those
ranges: one span, not a range per plan, so the filter stays the same length however many plans
come. The filter is rebuilt (SO_ATTACH_FILTER again) when the span changes: it widens as such a
plan is admitted and shrinks as the last ones end, so the kernel's own ephemeral ports are taken
only while a scan needs them.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from netscand.engine import bpf
from netscand.engine import plan as plans
from netscand.engine.guard import PlanGuard, route_gateways
from netscand.engine.pacing import Pacer
from netscand.engine.probes import PROBES, reply_clauses
from netscand.engine.rate import Routes
from netscand.engine.shards import PlanState
from netscand.engine.shm import (
    PLAN_SLOTS, R_REFUSED, REFUSE_INTERFACE, REFUSE_PLAN, REFUSE_TARGET, Shared, pack_result,
)
from netscand.engine.sockets import SNAPLEN, Link, Rx, Tx

log = structlog.get_logger()


class Intake:
    """The plans one worker runs, and the policy and sockets they are admitted under."""

    def __init__(self, shared: Shared, index: int, guard: PlanGuard, reload: Callable[[], PlanGuard],
                 link: Link, pacer: Pacer, emit: Callable[[bytes], None]) -> None:
        """`reload` reads the policy again; `pacer` is the worker's ceiling over all its plans,
        whose rate this keeps to the policy; `emit` reports a refusal to the control process."""
        self.shared, self.index, self.link, self.pacer, self.emit = shared, index, link, pacer, emit
        self.guard, self.reload = guard, reload
        self.plans: dict[int, PlanState] = {}  # by plan slot
        self.routes = Routes()  # what its plans' closed loops learned, for the next plans (rate.py)
        self.refused: dict[int, int] = {}  # plan slot -> generation of the plan refused there
        self.tx: dict[int, Tx] = {}  # by interface index
        self.rx: dict[int, Rx] = {}
        self.programs: dict[int, bytes] = {}  # by interface: its receive filter now
        self.slot_ports: dict[int, tuple[int, int]] = {}  # by interface: every plan slot's source ports
        self.ended = False  # a plan left: the filters may shrink
        self.hangup = False  # a reload: read the policy again
        self._set_ceiling()

    def refresh(self) -> None:
        """Every plan slot looked at again, after the policy if a reload came."""
        if self.hangup:
            self.reread_policy()
        for plan_slot in range(PLAN_SLOTS):
            self.plan(plan_slot)
        if self.ended:
            self.ended = False
            for ifindex in self.rx:
                try:
                    self._refilter(ifindex)
                except OSError as exc:  # the interface went away: the wider filter costs nothing
                    log.warning("engine.refilter_failed", worker=self.index, ifindex=ifindex, error=str(exc))

    def plan(self, plan_slot: int) -> PlanState | None:
        """This worker's copy of the plan in a plan slot, re-read when the control process replaced it."""
        buf = self.shared.plans[plan_slot]
        gen = plans.generation(buf)
        known = self.plans.get(plan_slot)
        if known is not None and known.plan.gen == gen:
            return known
        self.ended |= self.plans.pop(plan_slot, None) is not None
        if not gen or self.refused.get(plan_slot) == gen:
            return None
        try:
            plan = plans.read(buf, plan_slot, PROBES)
        except plans.PlanError as exc:
            self._refuse(plan_slot, gen, REFUSE_PLAN, detail=str(exc))
            return None
        return None if plan is None else self._admit(plan)

    def reread_policy(self) -> None:
        """The policy as the configuration file says now: at start and on a reload (which may
        narrow it: plans read from then on are held to it; a plan already running goes on, as a
        reload leaves running scans alone), and before a refusal (a reload may have widened it
        before this worker heard of it)."""
        self.hangup = False
        try:
            self.guard = self.reload()
        except Exception as exc:  # a file being edited: keep what we have
            log.warning("engine.policy_unreadable", worker=self.index, error=str(exc))
        self._set_ceiling()

    def _set_ceiling(self) -> None:
        # The rate ceiling over every scan at once: whatever the plans of however many
        # concurrent scans ask, each worker's pacer lets out at most max_rate / workers in all,
        # so all of them together stay within policy.max_rate.
        self.ceiling = self.guard.max_rate / self.shared.workers
        self.pacer.set_rate(self.ceiling)

    def _admit(self, plan: plans.Plan) -> PlanState | None:
        """A plan read from its slot, once the policy allows it and its sockets are open."""
        plan_slot, gen = plan.slot, plan.gen
        reason = self._refusal(plan)
        if reason:
            self._refuse(plan_slot, gen, reason)
            return None
        try:
            state = PlanState(plan, self._sockets(plan), self.routes)
        except OSError as exc:  # the interface went away, no CAP_NET_RAW, no kernel SYN to shape probes by
            self._refuse(plan_slot, gen, REFUSE_INTERFACE, exc.errno or 0, str(exc))
            return None
        except plans.PlanError as exc:  # what its probe type needs of a plan (a source port range)
            self._refuse(plan_slot, gen, REFUSE_PLAN, detail=str(exc))
            return None
        self.plans[plan_slot] = state
        return state

    def _refusal(self, plan: plans.Plan) -> int:
        """Why the policy forbids this plan (a REFUSE_* code), or 0. The policy is read again
        before a refusal: the configuration may have been reloaded, and widened, since."""
        reason = self.guard.refusal(plan)
        if not reason:
            return 0
        self.reread_policy()
        reason = self.guard.refusal(plan)
        if reason == REFUSE_TARGET and PROBES[plan.kind].resolves_neighbours:
            reason = self.guard.refusal(plan, route_gateways())
        return reason

    def _refuse(self, plan_slot: int, gen: int, reason: int, errno: int = 0, detail: str = "") -> None:
        self.refused[plan_slot] = gen
        log.warning("engine.plan_refused", worker=self.index, slot=plan_slot, plan=gen, reason=reason,
                    detail=detail or None)
        self.emit(pack_result(R_REFUSED, plan_gen=gen, a=reason, b=errno))

    def _sockets(self, plan: plans.Plan) -> Tx:
        """The interface's transmitter, its receiver opened beside it on first use, and its
        filter rebuilt if this plan widens it (module docstring)."""
        ifindex = plan.ifindex
        if ifindex not in self.tx:
            tx = self.link.transmitter(ifindex, bool(plan.flags & plans.FLAG_LOOPBACK))
            group = (self.shared.fanout_base + ifindex) & 0xFFFF
            self.slot_ports[ifindex] = plan.every_slot_ports
            program = self._program(ifindex, plan)
            try:
                self.rx[ifindex] = self.link.receiver(ifindex, group, program)
            except BaseException:
                tx.close()
                raise
            self.tx[ifindex], self.programs[ifindex] = tx, program
        else:
            self._refilter(ifindex, plan)
        return self.tx[ifindex]

    def _refilter(self, ifindex: int, plan: plans.Plan | None = None) -> None:
        """The interface's filter for its live plans (and `plan`, being admitted), if it changed."""
        program = self._program(ifindex, plan)
        if program != self.programs[ifindex]:
            self.link.refilter(self.rx[ifindex], program)
            self.programs[ifindex] = program

    def _program(self, ifindex: int, plan: plans.Plan | None) -> bytes:
        live = [s.plan for s in self.plans.values()] + ([plan] if plan else [])
        ranged = [p for p in live if p.ifindex == ifindex and p.sport_lo and PROBES[p.kind].range_replies]
        clauses = reply_clauses(*self.slot_ports[ifindex])
        if ranged:
            lo, hi = min(p.sport_lo for p in ranged), max(p.sport_hi for p in ranged)
            for replies in dict.fromkeys(PROBES[p.kind].range_replies for p in ranged):
                clauses += replies(lo, hi) if replies else ()
        return bpf.reply_filter(clauses, SNAPLEN)
