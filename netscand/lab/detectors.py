"""The detector lab: Debian's scanlogd and psad watching every lab host, as a sysadmin runs them.

- scanlogd (raw socket, Openwall's threshold) runs in each host's namespace and logs through
  syslog(3). It opens /dev/log after its chroot to /run/scanlogd/empty, so each one runs in a
  private mount namespace where /run is a directory of the lab's holding the collector's socket
  (detector_logs.py) at scanlogd/empty/dev/log: nothing of the machine's /run or /dev changes.
- psad reads the kernel's firewall log. Each host logs what a stateful firewall would not let
  through (every packet that is not part of an established connection) with the prefix
  "DROP <netns>" (psad's FW_MSG_SEARCH is DROP). The kernel writes a non-initial namespace's
  log only while net.netfilter.nf_log_all_netns is 1: set while any detector lab is up, and the
  value found before the first restored when the last goes down (one record for the machine,
  whatever --state-dir each lab has: the sysctl is the machine's too). psad runs in its offline
  analysis mode (`psad -A`) over the collected log, with a configuration of the lab's own that
  does no DNS or whois lookup, sends no mail and blocks nothing.

`mark(lab)` and `alerts(lab, since)` give what the detectors flagged after a point.
"""

from __future__ import annotations

import fcntl
import json
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netscand.lab import daemons, namespaces, procs, truth
from netscand.lab.detector_parse import (
    PsadMatch,
    PsadSource,
    ScanlogdAlert,
    flood_notice,
    parse_psad,
    parse_scanlogd,
    port_only_sids,
)
from netscand.lab.errors import LabError

if TYPE_CHECKING:
    from netscand.lab.lab import Lab

SCANLOGD = "/usr/sbin/scanlogd"
PSAD = "/usr/sbin/psad"
PSAD_CONF = Path("/etc/psad/psad.conf")
PSAD_SIGNATURES = Path("/etc/psad/signatures")
PSAD_HOSTNAME = "netscand-lab"  # the host name of the syslog lines psad reads
NF_LOG_ALL_NETNS = Path("/proc/sys/net/netfilter/nf_log_all_netns")
# Machine-wide, not in a lab's state dir: labs in other state dirs share the sysctl.
USERS_DIR = Path("/run/netscand-lab-detectors")
PSAD_TIMEOUT_S = 120
# scanlogd counts a source's packets to new ports as one scan while they come at most 3 s apart,
# and logs a scan once: a scan begun sooner after the last one's end is not logged again.
SCANLOGD_DELAY_S = 3


def root(state_dir: Path, prefix: str) -> Path:
    return daemons.work_dir(state_dir, prefix) / "detectors"


def mount_dir(work: Path, host: str) -> Path:
    """What a host's scanlogd sees as /run."""
    return work / host / "run"


def syslog_socket(work: Path, host: str) -> Path:
    return mount_dir(work, host) / "scanlogd" / "empty" / "dev" / "log"


def scanlogd_log(work: Path) -> Path:
    return work / "scanlogd.log"


def kernel_log(work: Path) -> Path:
    return work / "kernel.log"


def log_prefix(prefix: str, host: str) -> str:
    """The firewall log prefix of a lab host; with host "" the part all hosts of the lab share."""
    return f"DROP {prefix}-{host}"


def plan(lab_truth: dict[str, Any]) -> None:
    """Record in the truth that every lab host runs the detectors."""
    lab_truth["detectors"] = {"hosts": [h["name"] for h in lab_truth["hosts"]]}


def _ruleset(prefix: str, host: str) -> str:
    # Before the lab's own filter (priority 0), so the ports it drops are logged too.
    return ("table inet detectors {\n chain input {\n  type filter hook input priority -10; policy accept;\n"
            f'  ct state != {{ established, related }} log prefix "{log_prefix(prefix, host)} " '
            "flags tcp options\n }\n}\n")


def _scanlogd_script(work: Path, host: str) -> str:
    sock, run, err = (shlex.quote(str(p)) for p in (syslog_socket(work, host), mount_dir(work, host),
                                                     work / host / "scanlogd.err"))
    # A machine with a syslog daemon has /dev/log: scanlogd would connect to it before its
    # chroot and keep it, so in this mount namespace /dev/log is the collector's socket too.
    # Its error file is opened first: the state directory itself is under the /run it hides.
    return (f"nft -f -\nexec 3>>{err}\nif [ -e /dev/log ]; then mount --bind {sock} /dev/log; fi\n"
            f"mount --bind {run} /run\nexec {SCANLOGD} </dev/null >/dev/null 2>&3 3>&-\n")


@contextmanager
def _users(directory: Path) -> Iterator[dict[str, Any]]:
    """The machine's record of the detector labs up ({"before": the sysctl's value found by the
    first, "labs": {prefix: scanner namespace}}), changed under a lock and written back."""
    directory.mkdir(parents=True, exist_ok=True)
    record_file = directory / "labs.json"
    with open(directory / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            record = json.loads(record_file.read_text())
        except (FileNotFoundError, ValueError):
            record = {}
        yield record
        if record:
            truth.write(record_file, record)
        else:
            record_file.unlink(missing_ok=True)


def _alive(labs: dict[str, str]) -> dict[str, str]:
    # A lab that died without `down` holds nothing once its namespaces are gone.
    return {prefix: netns for prefix, netns in labs.items() if namespaces.exists(netns)}


def take_sysctl(prefix: str, netns: str, sysctl: Path = NF_LOG_ALL_NETNS, directory: Path = USERS_DIR) -> None:
    """Count lab `prefix` (scanner namespace `netns`) among the sysctl's users and set it to 1;
    the first user records the value it found (kept while any user is left, dead ones included:
    a dead lab's 1 is not the machine's value)."""
    with _users(directory) as record:
        record.setdefault("before", sysctl.read_text().strip())
        record["labs"] = {**_alive(record.get("labs", {})), prefix: netns}
        sysctl.write_text("1\n")


def give_back_sysctl(prefix: str | None, sysctl: Path = NF_LOG_ALL_NETNS, directory: Path = USERS_DIR) -> None:
    """Lab `prefix` no longer uses the sysctl (None: a lab whose state is lost, its namespaces
    gone); the last user left restores the value the first one found."""
    if not (directory / "labs.json").exists():
        return  # no detector lab up (most teardowns): not even the lock is needed
    with _users(directory) as record:
        if not record:
            return
        labs = _alive({name: netns for name, netns in record.get("labs", {}).items() if name != prefix})
        if labs:
            record["labs"] = labs
        else:
            sysctl.write_text(f"{record['before']}\n")
            record.clear()


def start(lab_truth: dict[str, Any], state_dir: Path, state_file: Path, helper_log: Path) -> None:
    """Start the detectors on every host of the truth's detector list (the lab is built)."""
    missing = [tool for tool in (SCANLOGD, PSAD) if not Path(tool).exists()]
    if missing:
        raise LabError(f"the detector lab needs {', '.join(missing)} (Debian: scanlogd psad)")
    prefix, config = lab_truth["prefix"], lab_truth["detectors"]
    take_sysctl(prefix, lab_truth["scanner"]["netns"])  # counted before it changes: a failed start gives it back
    work = root(state_dir, prefix)
    work.mkdir(parents=True, exist_ok=True)
    procs.spawn("netscand.lab.detector_logs", state_file, [str(work)], helper_log)
    hosts = {h["name"]: h for h in lab_truth["hosts"]}
    namespaces.run_scripts({hosts[name]["netns"]: (_scanlogd_script(work, name), _ruleset(prefix, name))
                            for name in config["hosts"]})


def stop(state: dict[str, Any] | None, state_dir: Path) -> None:
    """Give back the sysctl (the processes went with the lab's namespaces), unless another
    detector lab still needs it. Called for every lab torn down: one whose state is lost may
    have been a detector lab."""
    if state is None or isinstance(state.get("detectors"), dict):
        give_back_sysctl(state["prefix"] if state else None)


@dataclass(frozen=True)
class Cursor:
    """A point in the detectors' logs: `alerts(lab, since=cursor)` reads only what came after."""
    scanlogd: int = 0
    kernel: int = 0


@dataclass
class Report:
    """What the detectors flagged: scanlogd's alerts, the hosts whose scanlogd stopped logging
    for a while (flooded: later scans went unlogged), psad's analysis per source address, the
    lines that did not parse (kept, never fatal), and the cursor at the report's end."""
    scanlogd: list[ScanlogdAlert]
    psad: dict[str, PsadSource]
    port_only_sids: frozenset[int]
    until: Cursor
    flooded: set[str] = field(default_factory=set)
    unparsed: list[str] = field(default_factory=list)

    def scanlogd_hosts(self, source: str) -> set[str]:
        """The lab hosts whose scanlogd logged a scan from `source`."""
        return {alert.host for alert in self.scanlogd if alert.source == source}

    def danger_level(self, source: str) -> int:
        found = self.psad.get(source)
        return found.danger_level if found else 0

    def signatures(self, source: str, shape_only: bool = False) -> list[PsadMatch]:
        """psad's signature matches for `source`; `shape_only` leaves out the signatures that
        any SYN to their port matches (port_only_sids), which no probe shape can avoid."""
        found = self.psad.get(source)
        matches = found.signatures if found else []
        return [m for m in matches if not (shape_only and m.sid in self.port_only_sids)]


def _work(lab: Lab) -> Path:
    """The lab's detector directory, once its logs are there: a lab torn down has none, and its
    report would be an empty one, not "nothing flagged"."""
    if not isinstance(lab.truth.get("detectors"), dict):
        raise LabError(f"lab {lab.prefix!r} runs no detectors (lab up --detectors)")
    work = root(lab.state_dir, lab.prefix)
    missing = [str(p) for p in (lab.state_file, scanlogd_log(work), kernel_log(work)) if not p.exists()]
    if missing:
        raise LabError(f"lab {lab.prefix!r} has no detector state ({', '.join(missing)} missing): is it down?")
    return work


def _complete_size(path: Path) -> int:
    """The file's length up to its last whole line: a line being written is not read yet."""
    return path.read_bytes().rfind(b"\n") + 1


def mark(lab: Lab) -> Cursor:
    work = _work(lab)
    return Cursor(_complete_size(scanlogd_log(work)), _complete_size(kernel_log(work)))


def _read(path: Path, start: int, end: int) -> str:
    if end <= start:
        return ""
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(max(0, end - start)).decode(errors="replace")


def _psad_config(directory: Path) -> Path:
    """The system's psad.conf with paths of the lab's own and nothing that leaves the machine."""
    overrides = {"HOSTNAME": PSAD_HOSTNAME, "PSAD_DIR": directory / "log", "PSAD_RUN_DIR": directory / "run",
                 "PSAD_FIFO_DIR": directory / "fifo", "IPT_SYSLOG_FILE": directory / "fw.log",
                 "ALERTING_METHODS": "noemail,nosyslog", "ENABLE_WHOIS_LOOKUPS": "N", "ENABLE_DNS_LOOKUPS": "N",
                 "AUTO_DETECT_JOURNALCTL": "N", "ENABLE_FW_LOGGING_CHECK": "N", "ENABLE_AUTO_IDS": "N",
                 "ENABLE_DSHIELD_ALERTS": "N", "ENABLE_EXT_SCRIPT_EXEC": "N"}
    lines = []
    for line in PSAD_CONF.read_text().splitlines():
        name = re.match(r"^(\w+)\s", line)
        if name and name[1] in overrides:
            line = f"{name[1]}    {overrides[name[1]]};"
        lines.append(line)
    config = directory / "psad.conf"
    config.write_text("\n".join(lines) + "\n")
    return config


def _psad(work: Path, log: str) -> dict[str, PsadSource]:
    if not log.strip():
        return {}
    directory = Path(tempfile.mkdtemp(prefix="psad.", dir=work))
    try:
        (directory / "fw.log").write_text(log)
        config = _psad_config(directory)
        out = subprocess.run([PSAD, "-c", str(config), "-A", "-m", str(directory / "fw.log")],
                             capture_output=True, text=True, timeout=PSAD_TIMEOUT_S, stdin=subprocess.DEVNULL)
        if out.returncode:
            raise LabError(f"psad -A failed ({out.returncode}): {out.stderr.strip()[-300:]}")
        return parse_psad(out.stdout)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def alerts(lab: Lab, since: Cursor | None = None, settle_s: float = 0.5) -> Report:
    """What the detectors flagged after `since` (everything when None). `settle_s` lets the
    last packets' log lines reach the collector first."""
    time.sleep(settle_s)
    work = _work(lab)
    since = since or Cursor()
    until = mark(lab)
    report = Report([], _psad(work, _read(kernel_log(work), since.kernel, until.kernel)),
                    frozenset(port_only_sids(PSAD_SIGNATURES.read_text(errors="replace"))), until)
    for line in _read(scanlogd_log(work), since.scanlogd, until.scanlogd).splitlines():
        if alert := parse_scanlogd(line):
            report.scanlogd.append(alert)
        elif host := flood_notice(line):
            report.flooded.add(host)
        else:
            report.unparsed.append(line)
    return report
