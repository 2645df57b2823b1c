"""Issue 9's must-show: a real daemon scans the lab's networks, the hostile hosts among the
normal ones, with one `normal` scan while the attacker sends the scanner malformed frames.

One scan serves every test here (module fixture); each test checks one promise, so a failure
names the promise that broke, with the daemon's log. The budget: the port scan of a plan is
bounded by the profile's per-host budget (normal: 120 s, in the profile registry) and the
identification by one host's detection deadline (identify.host_deadline: 120 s for normal),
since hosts are identified side by side; SLACK_S covers the rest (ARP sweep, routed discovery,
name queries, reverse DNS, the store). An ordinary run takes well under a minute.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from netscand.lab import Lab, hostile
from netscand.lab.grade import OK, grade, identity_grades
from netscand.lab.harness import DaemonStartError, ReachableTemp, start_daemon, stop_daemon
from netscand.lab.truth import ROUTED_NET, SCAN_NET
from netscand.scan.identify import host_deadline
from netscand.scan.ports import top_ports
from netscand.scan.profiles import PROFILES
from netscand.scan.result import well_known_service
from netscand.statuses import FINISHED
from tests.api.conftest import scrape
from tests.daemon.test_metrics_lab import per_worker, total, wait_until_ready

pytestmark = pytest.mark.lab

SLACK_S = 30.0
NORMAL_BUDGET_S = float(PROFILES["normal"].host_budget_s)
SCAN_BUDGET_S = NORMAL_BUDGET_S + host_deadline(NORMAL_BUDGET_S) + SLACK_S
WAIT_PAST_BUDGET_S = 60.0  # how long past its budget a scan is waited for, to say by how much it missed
TOP = set(top_ports(1000))
# What detection may honestly say of each hostile service, besides the port's registered name
# (what is shown when detection says nothing) and "unknown".
HONEST = {21: {"ftp"}, 25: {"smtp"}, 53: {"dns"}, 80: {"http"}, 443: {"https", "http", "tls"},
          8443: {"https", "http", "tls"}}


@dataclass
class Outcome:
    """What the one scan gave; `problems` collects what could not be fetched, with why."""

    started: float = 0.0
    elapsed: float | None = None
    scan: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    log: str = ""
    attack: str = ""

    def devices(self) -> dict[str, dict[str, Any]]:
        return {d["ip"]: d for d in self.result.get("devices", [])}

    def why(self) -> str:
        """The context a failure message needs: problems met, the scan, the daemon's notable lines."""
        notable = Counter(filter(None, map(_notable, self.log.splitlines())))
        lines = [f"{n} x {line}" if n > 1 else line for line, n in notable.items()]
        return ("\nproblems: " + "; ".join(self.problems) + f"\nscan: {self.scan}\nattacker: {self.attack}"
                + "\ndaemon log (notable lines, repeats counted):\n" + "\n".join(lines[-40:]))


def _notable(line: str) -> str | None:
    """A log line worth a failure message, shortened: errors, warnings, exits, restarts, deadlines."""
    try:
        event = json.loads(line)
    except ValueError:
        return line[:300] if re.search(r"error|exit|restart|fail|Traceback|keeps", line, re.I) else None
    if not isinstance(event, dict):
        return None
    name = str(event.get("event", ""))
    if event.get("level") not in ("error", "warning", "critical") and not re.search(
            r"restart|exit|fail|deadline|tarpit|malformed", name):
        return None
    detail = {k: v for k, v in event.items() if k not in ("event", "level", "timestamp", "exception")}
    last = str(event.get("exception", "")).strip().splitlines()[-1:]  # the exception's own line
    return f"{event.get('level')} {name} {detail} {last[0] if last else ''}"[:300]


def _wait(client: httpx.Client, scan_id: str, outcome: Outcome) -> None:
    deadline = outcome.started + SCAN_BUDGET_S + WAIT_PAST_BUDGET_S
    while time.monotonic() < deadline:
        outcome.scan = client.get(f"/api/v1/scans/{scan_id}").json()
        if outcome.scan["status"] in FINISHED:
            outcome.elapsed = time.monotonic() - outcome.started
            return
        time.sleep(0.5)
    outcome.problems.append(f"still {outcome.scan.get('status')} after {SCAN_BUDGET_S + WAIT_PAST_BUDGET_S:.0f} s: "
                            "stopped")
    client.post(f"/api/v1/scans/{scan_id}/stop")


def _scan(lab: Lab, state_dir: Path, outcome: Outcome) -> None:
    try:
        daemon = start_daemon(lab, state_dir)
    except DaemonStartError as exc:  # every test fails with this, rather than erroring in the fixture
        outcome.problems.append("the daemon did not start")
        outcome.log = str(exc)
        return
    attacker_log = lab.log_file("attacker")
    seen = attacker_log.stat().st_size
    try:
        with daemon.unix() as c:
            wait_until_ready(c)
            outcome.before = scrape(c)
            outcome.started = time.monotonic()
            r = c.post("/api/v1/scans/start", json={"target": [SCAN_NET, ROUTED_NET], "profile": "normal"})
            assert r.status_code == 202, r.text
            _wait(c, r.json()["id"], outcome)
            outcome.result = c.get(f"/api/v1/scans/{r.json()['id']}/result").json()
            outcome.after = scrape(c)
    except (httpx.HTTPError, AssertionError, ValueError, KeyError) as exc:
        outcome.problems.append(f"talking to the daemon failed: {type(exc).__name__}: {exc}")
    finally:
        code = stop_daemon(daemon)
        if code not in (0, -15):
            outcome.problems.append(f"the daemon exited with {code}")
        outcome.log = daemon.log.read_text(errors="replace")
        # The attack ends ACTIVE_HOLD_S after the scanner's last frame to a hostile host; its
        # "stops" line counts the frames sent while the scan ran.
        deadline = time.monotonic() + hostile.ACTIVE_HOLD_S + 5
        while "attack stops" not in (new := attacker_log.read_bytes()[seen:].decode()) and time.monotonic() < deadline:
            time.sleep(0.5)
        outcome.attack = " | ".join(new.strip().splitlines())


@pytest.fixture(scope="module")
def outcome(hostile_lab: Lab, tmp_path_factory: ReachableTemp) -> Outcome:
    found = Outcome()
    _scan(hostile_lab, tmp_path_factory.mktemp("hostile") / "state", found)
    return found


def others(lab: Lab) -> dict[str, Any]:
    """The lab's truth without its hostile hosts: what grading applies to."""
    return {**lab.truth, "hosts": [h for h in lab.truth["hosts"] if not hostile.is_hostile(h)]}


def role(lab: Lab, name: str) -> dict[str, Any]:
    return next(h for h in lab.truth["hosts"] if h.get("role") == name)


def open_tcp(device: dict[str, Any]) -> set[int]:
    return {p["port"] for p in device.get("ports", []) if p["state"] == "open" and p.get("protocol", "tcp") == "tcp"}


def test_the_attacker_was_sending_while_the_scan_ran(outcome: Outcome) -> None:
    counts = [int(n) for n in re.findall(r"attack stops: (\d+) frames", outcome.attack)]
    assert counts and max(counts) >= hostile.FRAME_RATE, outcome.why()


def test_the_scan_completes_within_its_budget(outcome: Outcome) -> None:
    assert outcome.scan.get("status") == "completed", outcome.why()
    assert outcome.elapsed is not None and outcome.elapsed <= SCAN_BUDGET_S, (
        f"took {outcome.elapsed} s of {SCAN_BUDGET_S} s{outcome.why()}")


def test_no_worker_was_restarted(outcome: Outcome) -> None:
    assert per_worker(outcome.after, "netscand_worker_restarts_total") == {"0": 0, "1": 0}, outcome.why()
    assert not re.search(r"exited with|restarting|keeps failing", outcome.log), outcome.why()


def test_the_malformed_frames_were_counted(outcome: Outcome) -> None:
    moved = total(outcome.after, "netscand_frames_malformed_total") - total(outcome.before,
                                                                            "netscand_frames_malformed_total")
    assert moved > 0, f"netscand_frames_malformed_total moved by {moved}{outcome.why()}"


def test_every_other_host_still_equals_the_truth(hostile_lab: Lab, outcome: Outcome) -> None:
    truth = others(hostile_lab)
    devices = outcome.devices()
    assert devices, outcome.why()
    router = set(truth["router"]["ips"])
    hostiles = {h["ip"] for h in hostile_lab.truth["hosts"] if hostile.is_hostile(h)}
    # Forged frames must not make up hosts: every device is a lab host, the router, or the
    # scanner itself (its own address is in the target, and found over loopback, as nmap does).
    expected = {h["ip"] for h in truth["hosts"]} | router | hostiles | {truth["scanner"]["ip"]}
    assert set(devices) == expected, outcome.why()
    for host in truth["hosts"]:
        got = devices[host["ip"]]
        assert open_tcp(got) == set(host["open"]) & TOP, host["name"]
        assert not got.get("tarpit") and not got.get("timed_out"), host["name"]
        assert got["mac"] == (None if host["routed"] else host["mac"].upper()), host["name"]
        assert got["vendor"] == (None if host["routed"] else host.get("vendor", "Randomized (locally administered)"))
        ports = {p["port"]: p for p in got["ports"]}
        for port, banner in host["banners"].items():
            if int(port) in TOP:
                assert ports[int(port)]["banner"] == banner.strip(), (host["name"], port)
        if host["kind"] == "imitation" and got["ports"]:
            # As test_e2e: Linux defaults give a Linux guess, a Linux stack with another TTL none.
            linux = host["ttl"] == 64
            assert (got["os_guess"] or "").startswith("Linux") if linux else got["os_guess"] is None, host["name"]
    for ip in router:
        assert open_tcp(devices[ip]) == set(truth["router"]["open"])
    wrong = [g for g in grade(truth, outcome.result["devices"], TOP) + identity_grades(truth, outcome.result["devices"])
             if g.verdict != OK]
    assert wrong == [], outcome.why()


def test_the_tarpit_is_reported_as_one(hostile_lab: Lab, outcome: Outcome) -> None:
    device = outcome.devices().get(role(hostile_lab, "tarpit")["ip"])
    assert device is not None, outcome.why()
    assert device.get("tarpit") is True, {k: v for k, v in device.items() if k != "ports"}
    assert len(device.get("ports", [])) <= 25  # its answers are counted, not listed one by one


def test_the_hostile_services_host_is_reported_honestly(hostile_lab: Lab, outcome: Outcome) -> None:
    services = role(hostile_lab, "services")
    device = outcome.devices().get(services["ip"])
    assert device is not None, outcome.why()
    assert not device.get("tarpit")
    assert open_tcp(device) == set(services["open"])
    for port in device["ports"]:
        said = (port.get("service") or "unknown").lower()
        if port.get("protocol", "tcp") == "tcp":
            registered = (well_known_service(port["port"]) or "unknown").lower()
            assert said in HONEST[port["port"]] | {registered, "unknown"}, port
        assert len(port.get("banner") or "") <= 256 and len(port.get("product") or "") <= 128, port
