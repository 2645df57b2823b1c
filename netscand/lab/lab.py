"""The lab as one object: build it, find it again from its state file, change loss, tear it down."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import netns

from netscand.lab import daemons, impair, namespaces, procs, resolver, safety, topology, truth
from netscand.lab.detectors import plan as plan_detectors
from netscand.lab.detectors import start as start_detectors
from netscand.lab.detectors import stop as stop_detectors
from netscand.lab.errors import LabError
from netscand.lab.hostile import is_hostile

DEFAULT_STATE_DIR = Path("/run/netscand-lab")
TOOLS = ("ip", "nft", "ethtool", "sysctl")
MAX_DELAY_MS = 10_000


HELPER_LOGS = ("services", "responders", "relay", "hostile", "attacker", "detectors")


def _log_file(state_dir: Path, prefix: str, helper: str) -> Path:
    return state_dir / f"{prefix}.{helper}.log"


def _log_files(state_dir: Path, prefix: str) -> list[Path]:
    return [_log_file(state_dir, prefix, helper) for helper in HELPER_LOGS]


def _check_can_build() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, nftables, raw sockets)")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise LabError(f"the lab needs {', '.join(missing)} on PATH (Debian: iproute2 nftables ethtool procps)")


def _check_args(hosts: int, loss_pct: float, delay_ms: int, prefix: str) -> None:
    namespaces.check_prefix(prefix)
    if not 1 <= hosts <= truth.MAX_HOSTS:
        raise LabError(f"hosts must be between 1 and {truth.MAX_HOSTS}, not {hosts}")
    if not 0 <= loss_pct <= 100:
        raise LabError(f"loss must be between 0 and 100 percent, not {loss_pct}")
    if not 0 <= delay_ms <= MAX_DELAY_MS:
        raise LabError(f"delay must be between 0 and {MAX_DELAY_MS} ms, not {delay_ms}")


def teardown(prefix: str, state_dir: Path = DEFAULT_STATE_DIR) -> None:
    """Stop every helper and delete every namespace of this prefix, whatever state it is in."""
    state_dir = Path(state_dir)
    state_file = truth.state_file(state_dir, prefix)
    names = namespaces.lab_namespaces(prefix)
    foreign = safety.check_removable(names)
    ours = [name for name in names if name not in foreign]
    in_lab = netns.ns_pids()  # anything still running inside the lab (a scanner left behind) keeps it alive
    try:
        state = truth.read(state_file)
    except ValueError:
        state = None  # a torn state file: its namespaces and helpers are still found by name
    pids = set(procs.find_helpers(state_file))
    pids.update(pid for name in ours for pid in in_lab.get(name, []))
    survivors = procs.stop(sorted(pids))
    for name in ours:
        namespaces.remove(name)
    resolver.remove(prefix)
    stop_detectors(state, state_dir)  # once their namespaces are gone, nothing logs any more
    for path in (state_file, *_log_files(state_dir, prefix)):
        path.unlink(missing_ok=True)
    shutil.rmtree(daemons.work_dir(state_dir, prefix), ignore_errors=True)
    if foreign:
        raise LabError(f"left namespaces {', '.join(foreign)} alone: they hold interfaces the lab did not create")
    if survivors:
        raise LabError(f"processes {survivors} of lab {prefix!r} survived SIGKILL")


@dataclass
class Lab:
    truth: dict[str, Any]
    state_dir: Path = DEFAULT_STATE_DIR

    @property
    def prefix(self) -> str:
        return str(self.truth["prefix"])

    @property
    def scanner_ns(self) -> str:
        return str(self.truth["scanner"]["netns"])

    @property
    def state_file(self) -> Path:
        return truth.state_file(self.state_dir, self.prefix)

    def log_file(self, helper: str) -> Path:
        """Where a helper ("services", "attacker", ...) writes what it has to say."""
        return _log_file(self.state_dir, self.prefix, helper)

    @classmethod
    def up(cls, hosts: int = 8, loss_pct: float = 0, delay_ms: int = 0, seed: int = 1,
           prefix: str = "nsd", state_dir: Path = DEFAULT_STATE_DIR, servers: bool = False,
           hostile: bool = False, detectors: bool = False, wide_routed: bool = False) -> Lab:
        """Build a lab (replacing a stale one with the same prefix) and return it; `servers`
        adds the hosts that run real daemons, `hostile` the hosts that misbehave (hostile.py),
        `detectors` runs scanlogd and psad on every host (detectors.py), `wide_routed` routes
        all of truth.WIDE_ROUTED_NET to the router, live only in its /24 (topology.py)."""
        _check_args(hosts, loss_pct, delay_ms, prefix)
        _check_can_build()
        safety.check_host_namespace()
        state_dir = Path(state_dir)
        teardown(prefix, state_dir)
        lab = cls(truth.plan(prefix, hosts, seed, loss_pct, delay_ms, servers, hostile, wide_routed), state_dir)
        if detectors:
            plan_detectors(lab.truth)
        try:
            lab._build()
        except BaseException as exc:
            try:
                teardown(prefix, state_dir)
            except Exception:
                pass  # the build error is the one worth reporting
            if isinstance(exc, Exception) and not isinstance(exc, LabError):
                raise LabError(f"building lab {prefix!r} failed: {exc}") from exc
            raise
        return lab

    def _build(self) -> None:
        topology.build(self.truth)
        resolver.write(self.truth)
        impair.set_loss(self.prefix, self.truth["loss_pct"])
        # Written before the helpers start: the services read it, and a failed build can be found.
        truth.write(self.state_file, self.truth)
        services_log, responders_log, relay_log, hostile_log, attacker_log, detectors_log = _log_files(self.state_dir, self.prefix)
        self.truth["services_pid"] = procs.spawn("netscand.lab.services", self.state_file, [], services_log)
        if any("mdns" in h or "netbios" in h for h in self.truth["hosts"]):
            procs.spawn("netscand.lab.responders", self.state_file, [], responders_log)
        if any(map(is_hostile, self.truth["hosts"])):
            procs.spawn("netscand.lab.hostile_services", self.state_file, [], hostile_log)
            procs.spawn("netscand.lab.attacker", self.state_file, [], attacker_log)
        daemons.start(self.truth, self.state_dir)
        if "detectors" in self.truth:
            start_detectors(self.truth, self.state_dir, self.state_file, detectors_log)
        if self.truth["delay_ms"] > 0:
            self.truth["relay_pid"] = procs.spawn(
                "netscand.lab.relay", self.state_file,
                [topology.relay_ns(self.prefix), str(self.truth["delay_ms"]), *topology.RELAY_IFS], relay_log)
        truth.write(self.state_file, self.truth)

    @classmethod
    def load(cls, prefix: str = "nsd", state_dir: Path = DEFAULT_STATE_DIR) -> Lab:
        found = status(prefix, state_dir)
        if found is None:
            raise LabError(f"no lab with prefix {prefix!r} is up (state dir {state_dir})")
        return cls(found, Path(state_dir))

    def scanner_argv(self, argv: list[str]) -> list[str]:
        return namespaces.exec_argv(self.scanner_ns, argv)

    def set_loss(self, pct: float) -> None:
        impair.set_loss(self.prefix, pct)
        self.truth["loss_pct"] = pct
        truth.write(self.state_file, self.truth)

    def down(self) -> None:
        teardown(self.prefix, self.state_dir)


def status(prefix: str = "nsd", state_dir: Path = DEFAULT_STATE_DIR) -> dict[str, Any] | None:
    """The truth of the lab with this prefix if it is up, else None (a state file alone is stale)."""
    try:
        state = truth.read(truth.state_file(Path(state_dir), prefix))
    except ValueError:
        return None
    if state is None or not namespaces.exists(state["scanner"]["netns"]):
        return None
    return state
