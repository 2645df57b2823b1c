"""Running scans share the engine, with the real daemon in the lab: a scan crawling over every
port of every lab host does not hold up a small one started after it (issue 9: nothing an API
client sends can stall the daemon). Before, each worker sent one shard at a time, and the crawl's
first shards, 65536 probes at 5 probes/s a worker, held the workers for hours."""

from __future__ import annotations

import time

import pytest

from netscand.lab import Lab
from netscand.lab.harness import Daemon, all_hosts, open_ports
from tests.daemon.test_e2e import wait_for
from tests.daemon.test_faults import start, until

pytestmark = pytest.mark.lab

CRAWL = {"profile": "custom", "ports": ["1-65535"], "rate": 10}


def test_a_slow_scan_does_not_hold_up_a_fast_one(lab: Lab, daemon: Daemon) -> None:
    on_link = [h for h in lab.truth["hosts"] if not h["routed"]]
    host = next(h for h in on_link if h["open"])
    with daemon.unix() as c:
        slow = start(c, {"target": all_hosts(lab), **CRAWL})
        # Its ARP sweep is over once every on-link host is found; its port scan comes next.
        until(lambda: c.get(f"/api/v1/scans/{slow}").json()["hosts_found"] >= len(on_link), 60,
              "the slow scan did not find the on-link hosts")
        time.sleep(2)  # the sweep's last reply timeout, then the port scan's shards are handed out
        began = time.monotonic()
        fast = start(c, {"target": host["ip"], "profile": "custom", "ports": host["open"]})
        done = wait_for(c, fast, timeout=120)
        took = time.monotonic() - began
        assert (done["status"], done["error"]) == ("completed", None), done
        assert took < 20, f"the fast scan took {took:.1f} s beside the slow one"
        result = c.get(f"/api/v1/scans/{fast}/result").json()
        assert open_ports(result) == {(host["ip"], port) for port in host["open"]}
        crawling = c.get(f"/api/v1/scans/{slow}").json()
        assert crawling["status"] == "running" and crawling["progress_percent"] < 5, crawling
        assert c.post(f"/api/v1/scans/{slow}/stop").status_code == 200
        assert wait_for(c, slow)["status"] == "cancelled"
