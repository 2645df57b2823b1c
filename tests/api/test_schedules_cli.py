"""`netscanctl schedules` against a real daemon's API over its Unix socket: its tables, --json,
and a refusal as one line."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

import orjson
import pytest

from netscand.cli import ctl
from tests.api.conftest import Api


def netscanctl(api: Api, capfd: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = ctl.main(["--socket", str(api.socket_path), *argv])
    sys.stdout.flush()  # --json writes to its buffer
    out, err = capfd.readouterr()
    return code, out, err


def test_create_list_show_disable_enable_delete(api: Api, capfd: pytest.CaptureFixture[str]) -> None:
    code, out, _ = netscanctl(api, capfd, "--json", "schedules", "create", "nightly", "--cron", "0 2 * * *",
                              "198.18.0.1", "198.18.0.2", "--profile", "custom", "--ports", "22,80-81",
                              "--missed", "skip", "--deliver", "changes")
    made = orjson.loads(out[out.index("{\n"):out.index("\n}\n") + 2])  # the daemon logs to stdout too
    assert code == 0 and made["target"] == ["198.18.0.1", "198.18.0.2"] and made["ports"] == [22, "80-81"]
    assert (made["missed"], made["deliver"], made["enabled"]) == ("skip", "changes", True)
    assert made["next_due"].endswith("T02:00:00Z")
    code, out, _ = netscanctl(api, capfd, "schedules", "list")
    assert code == 0 and made["id"] in out and "0 2 * * *" in out and "198.18.0.1,198.18.0.2" in out
    assert "1 of 1" in out
    code, out, _ = netscanctl(api, capfd, "schedules", "disable", made["id"])
    assert code == 0 and "enabled  False" in out and "next_due  -" in out
    code, out, _ = netscanctl(api, capfd, "schedules", "enable", made["id"])
    assert code == 0 and "enabled  True" in out and "T02:00:00Z" in out
    code, out, _ = netscanctl(api, capfd, "schedules", "delete", made["id"])
    assert code == 0 and "deleted" in out
    code, _, err = netscanctl(api, capfd, "schedules", "show", made["id"])
    assert code == 1 and err.startswith("netscanctl: 404 Schedule not found") and err.count("\n") == 1


def test_show_lists_the_latest_runs(api: Api, capfd: pytest.CaptureFixture[str]) -> None:
    code, out, _ = netscanctl(api, capfd, "--json", "schedules", "create", "every minute", "--cron", "* * * * *",
                              "198.18.0.1", "--profile", "quick")
    made = orjson.loads(out[out.index("{\n"):out.index("\n}\n") + 2])
    due = datetime.fromisoformat(made["next_due"])
    api.orchestrator.schedules.clock = lambda: due + timedelta(seconds=1)
    api.on_loop(api.orchestrator.schedules.tick)
    code, out, _ = netscanctl(api, capfd, "schedules", "show", made["id"])
    assert code == 0 and "latest runs" in out, out
    assert f"{made['next_due']}   started" in out, out


def test_a_refusal_is_one_line(api: Api, capfd: pytest.CaptureFixture[str]) -> None:
    code, _, err = netscanctl(api, capfd, "schedules", "create", "bad", "--cron", "61 * * * *", "198.18.0.1")
    assert code == 1 and "out of range" in err and err.count("\n") == 1
