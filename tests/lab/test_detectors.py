"""The detector lab: Debian's scanlogd and psad flag nmap's scans of the lab and nothing else,
their output is read whatever it holds, and the kernel's log setting is given back. Needs root
and nmap (Debian's package)."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netscand.lab import Lab, detectors
from netscand.lab.detector_parse import (
    flood_notice,
    kernel_record,
    parse_psad,
    parse_scanlogd,
    port_only_sids,
)
from netscand.lab.errors import LabError
from netscand.lab.harness import lab_up
from netscand.lab.safety import LAB_NETS
from netscand.scan.ports import top_ports

pytestmark = pytest.mark.lab

PORTS = top_ports(100)
OWN_PREFIX = "nsdu"  # not the lab factory's: a detector lab of this test's own, beside detector_lab
OTHER_PREFIX = "nsdv"  # a second one, in another state dir


def nf_log_all_netns() -> str:
    return detectors.NF_LOG_ALL_NETNS.read_text().strip()


def host_ips(lab: Lab) -> list[str]:
    ips = [h["ip"] for h in lab.truth["hosts"]]
    # nmap is only ever given lab addresses: nothing it sends can leave the lab.
    assert all(any(ipaddress.ip_address(ip) in net for net in LAB_NETS) for ip in ips)
    return ips


def nmap(lab: Lab, template: str) -> None:
    time.sleep(detectors.SCANLOGD_DELAY_S + 0.5)  # or scanlogd takes it for the last test's scan going on
    argv = ["nmap", "-sS", template, "-n", "-Pn", "-p", ",".join(map(str, PORTS)), *host_ips(lab)]
    subprocess.run(lab.scanner_argv(argv), check=True, capture_output=True, timeout=300)


def test_lab_down_gives_back_nf_log_all_netns(lab_lock: None) -> None:
    before = nf_log_all_netns()  # "1" already if another detector lab is up: it must stay so
    with lab_up(hosts=1, prefix=OWN_PREFIX, detectors=True) as lab:
        assert nf_log_all_netns() == "1"
        assert lab.truth["detectors"]["hosts"] == ["h1"]
    assert nf_log_all_netns() == before


def sysctl_users() -> dict[str, str]:
    record = detectors.USERS_DIR / "labs.json"
    return json.loads(record.read_text())["labs"] if record.exists() else {}


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A state dir short enough for the syslog sockets under it (AF_UNIX paths are 107 bytes at most)."""
    path = Path(tempfile.mkdtemp(prefix="nsd", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_detector_labs_in_two_state_dirs_share_nf_log_all_netns(lab_lock: None, state_dir: Path) -> None:
    before = nf_log_all_netns()
    first = Lab.up(hosts=1, prefix=OWN_PREFIX, detectors=True, state_dir=state_dir / "a")
    try:
        with lab_up(hosts=1, prefix=OTHER_PREFIX, detectors=True, state_dir=state_dir / "b"):
            assert {OWN_PREFIX, OTHER_PREFIX} <= set(sysctl_users())
            first.down()  # the first lab down while the second is up: it keeps the sysctl
            assert nf_log_all_netns() == "1"
            assert OWN_PREFIX not in sysctl_users() and OTHER_PREFIX in sysctl_users()
    finally:
        first.down()  # again, if the test failed before: down takes a lab down whatever its state
    assert nf_log_all_netns() == before
    assert OTHER_PREFIX not in sysctl_users()


def test_nf_log_all_netns_is_restored_past_a_lab_that_died_without_down(tmp_path: Path) -> None:
    # A file stands in for the sysctl, which other labs' detectors may need at 1 meanwhile.
    sysctl, users = tmp_path / "nf_log_all_netns", tmp_path / "users"
    sysctl.write_text("0\n")
    detectors.take_sysctl("nsdw", "nsdw-scan", sysctl, users)  # no such namespace: it died, never down
    detectors.take_sysctl("nsdx", "nsdx-scan", sysctl, users)
    assert sysctl.read_text() == "1\n"
    detectors.give_back_sysctl(None, sysctl, users)  # a teardown that found no state: the dead go too
    assert sysctl.read_text() == "0\n"
    assert not (users / "labs.json").exists()
    detectors.give_back_sysctl("nsdx", sysctl, users)  # given back twice: nothing left to restore
    assert sysctl.read_text() == "0\n"


def test_alerts_of_a_lab_torn_down_raise(lab_lock: None, state_dir: Path) -> None:
    with lab_up(hosts=1, prefix=OWN_PREFIX, detectors=True, state_dir=state_dir) as lab:
        assert detectors.alerts(lab, settle_s=0).scanlogd == []
    with pytest.raises(LabError, match="missing"):
        detectors.alerts(lab, settle_s=0)


@pytest.mark.parametrize("template", ["-T3", "-T4"])
def test_nmap_syn_scan_raises_alerts_on_every_host(detector_lab: Lab, template: str) -> None:
    scanner = detector_lab.truth["scanner"]["ip"]
    since = detectors.mark(detector_lab)
    nmap(detector_lab, template)
    report = detectors.alerts(detector_lab, since=since, settle_s=1)
    assert report.scanlogd_hosts(scanner) == {h["name"] for h in detector_lab.truth["hosts"]}
    assert all(a.destination in host_ips(detector_lab) for a in report.scanlogd)
    assert report.danger_level(scanner) >= 1
    # psad's signatures that match a SYN scan test only the destination port: nmap's probe
    # shape itself matches none of them.
    assert report.signatures(scanner)
    assert not report.signatures(scanner, shape_only=True)
    assert report.unparsed == []
    assert report.flooded == set()


def test_one_connection_raises_nothing(detector_lab: Lab) -> None:
    host = detector_lab.truth["hosts"][0]
    since = detectors.mark(detector_lab)
    script = (f"import socket; s = socket.create_connection(({host['ip']!r}, {host['open'][0]}), timeout=5); "
              "s.close()")
    subprocess.run(detector_lab.scanner_argv(["python3", "-c", script]), check=True, timeout=30)
    report = detectors.alerts(detector_lab, since=since, settle_s=1)
    assert report.scanlogd == []
    assert report.psad == {}
    assert report.until.kernel > since.kernel  # the SYN was logged, and psad let it pass


def test_malformed_log_lines_are_kept_raw(detector_lab: Lab) -> None:
    since = detectors.mark(detector_lab)
    work = detectors.root(detector_lab.state_dir, detector_lab.prefix)
    junk = ["", "garbage", "1.5 h1 <25>Dec  7 06:39:34 scanlogd: 198.18.0.1 to", "nan h9 \udcff" * 3]
    with open(detectors.scanlogd_log(work), "a", errors="surrogateescape") as log:
        log.write("\n".join(junk) + "\n")
    with open(detectors.kernel_log(work), "a") as log:
        log.write("Dec  7 06:39:34 netscand-lab kernel: DROP nsdt-h1 IN=eth0 SRC=garbage PROTO=TCP DPT=x\n")
    report = detectors.alerts(detector_lab, since=since, settle_s=0)
    assert report.scanlogd == []
    assert len(report.unparsed) == len(junk)


# Numbers far past what int() and float() take, and digits that are not ASCII ("²".isdigit()).
HUGE = "9" * 5000
NUMBERS = st.sampled_from([HUGE, "9" * 400, "1e999", "nan", "inf", "-1", "²", "١٢", "18446744073709551616"])


@given(st.text(max_size=300))
def test_scanlogd_parser_is_total(line: str) -> None:
    alert = parse_scanlogd(line)
    assert alert is None or alert.ports


@given(NUMBERS, NUMBERS)
def test_scanlogd_parser_takes_no_number_it_cannot_hold(stamp: str, number: str) -> None:
    line = f"{stamp} h1 198.18.0.1:{number} to 198.18.0.10 ports {number}, 22, fSrpauxy, TTL {number} @06:39:34"
    assert parse_scanlogd(line) is None


@given(st.text(max_size=300))
def test_psad_parser_is_total(text: str) -> None:
    parse_psad("SRC:  198.18.0.1, DL: 2, Dsts: 1, Pkts: 9\nDST: x\nSignature match: \"a\"\n" + text)


@given(NUMBERS, NUMBERS)
def test_psad_parser_takes_no_number_it_cannot_hold(level: str, count: str) -> None:
    report = parse_psad(f"SRC:  198.18.0.1, DL: {level}, Dsts: 1, Pkts: {count}, Total protocols: 1\n"
                        f"SRC:  198.18.0.2, DL: 2, Dsts: 1, Pkts: 3\n    DST: 198.18.0.10\n"
                        f'        Signature match: "x"\n    TCP, Count: {count}, DP: {level}, SYN, Sid: {count}\n')
    numbers = [n for found in report.values() for m in found.signatures for n in (m.sid, m.count, m.dport)]
    numbers += [n for found in report.values() for n in (found.danger_level, found.packets)]
    assert all(n is None or 0 <= n < 10**10 for n in numbers)
    assert port_only_sids(f"alert tcp any any -> any 80 (msg:\"x\"; flags:S; sid:{count}; psad_id:{level};)") == set()


@given(st.binary(max_size=300))
def test_kernel_record_is_total(record: bytes) -> None:
    line = kernel_record(record, 0.0, "lab", "DROP nsdt-")
    assert line is None or line.count("\n") == 1


@given(st.sampled_from([b"9" * 400, b"9" * 21, HUGE.encode()]), st.floats(allow_nan=False))
def test_kernel_record_takes_no_stamp_it_cannot_hold(usec: bytes, boot_epoch: float) -> None:
    assert kernel_record(b"6,1," + usec + b",-;DROP nsdt-h1 x", 0.0, "lab", "DROP nsdt-") is None
    line = kernel_record(b"6,1,99999999999999999999,-;DROP nsdt-h1 x", boot_epoch, "lab", "DROP nsdt-")
    assert line is None or line.endswith("DROP nsdt-h1 x\n")


def test_parsers_read_real_lines() -> None:
    line = ("1765089574.123 h1 <25>Dec  7 06:39:34 scanlogd: 198.18.0.1:45296 to 198.18.0.10 ports 25, 22, 53, "
            "..., fSrpauxy, TOS 00 @06:39:34")
    alert = parse_scanlogd(line)
    assert alert is not None
    assert (alert.host, alert.source, alert.source_port, alert.ports, alert.more_ports, alert.ttl) == \
        ("h1", "198.18.0.1", 45296, (25, 22, 53), True, None)
    report = parse_psad('SRC:  198.18.0.1, DL: 3, Dsts: 1, Pkts: 1100, Total protocols: 1, Unique sigs: 1\n'
                        '    DST: 198.18.0.10\n'
                        '        Signature match: "MISC VNC communication attempt"\n'
                        '            TCP, Chain: INPUT, Count: 2, DP: 5900, SYN, Sid: 100202\n')
    match = report["198.18.0.1"].signatures[0]
    assert flood_notice("1.5 h2 <25>Dec  7 06:39:34 scanlogd: More possible port scans follow") == "h2"
    assert (report["198.18.0.1"].danger_level, match.sid, match.count, match.dport) == (3, 100202, 2, 5900)
    assert 100202 in port_only_sids(Path(detectors.PSAD_SIGNATURES).read_text())
