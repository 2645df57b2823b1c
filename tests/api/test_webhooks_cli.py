"""`netscanctl webhooks` against a real daemon's API over its Unix socket."""

from __future__ import annotations

import sys

import orjson
import pytest

from netscand.cli import ctl
from netscand.config import WebhooksConfig
from tests.api.conftest import Api, ApiRunner


@pytest.fixture
def hooks_api(api_factory: ApiRunner) -> Api:
    return api_factory(webhooks=WebhooksConfig(allowed_destinations=["127.0.0.0/8"]))


def netscanctl(api: Api, capfd: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = ctl.main(["--socket", str(api.socket_path), *argv])
    sys.stdout.flush()  # --json writes to its buffer
    out, err = capfd.readouterr()
    return code, out, err


def test_create_list_update_deliveries_delete(hooks_api: Api, capfd: pytest.CaptureFixture[str]) -> None:
    code, out, _ = netscanctl(hooks_api, capfd, "--json", "webhooks", "create", "http://127.0.0.1:9/h",
                              "--event", "change.*", "--event", "scan.state")
    hook = orjson.loads(out[out.index("{\n"):out.index("\n}\n") + 2])  # the daemon logs to stdout too
    assert code == 0 and hook["events"] == ["change.*", "scan.state"] and hook["secret"].startswith("whsec_")
    code, out, _ = netscanctl(hooks_api, capfd, "webhooks", "list")
    assert code == 0 and hook["id"] in out and "change.* scan.state" in out and "1 of 1" in out
    code, out, _ = netscanctl(hooks_api, capfd, "webhooks", "update", hook["id"], "--disable")
    assert code == 0 and "enabled  False" in out
    code, out, _ = netscanctl(hooks_api, capfd, "webhooks", "deliveries", hook["id"])
    assert code == 0 and "0 of 0" in out
    code, out, _ = netscanctl(hooks_api, capfd, "webhooks", "delete", hook["id"])
    assert code == 0 and "deleted" in out
    code, _, err = netscanctl(hooks_api, capfd, "webhooks", "show", hook["id"])
    assert code == 1 and err.startswith("netscanctl: 404 Webhook not found") and err.count("\n") == 1


def test_a_refusal_is_one_line(hooks_api: Api, capfd: pytest.CaptureFixture[str]) -> None:
    code, _, err = netscanctl(hooks_api, capfd, "webhooks", "create", "http://198.18.0.20/", "--event", "*")
    assert code == 1 and "198.18.0.20 is outside webhooks.allowed_destinations" in err and err.count("\n") == 1
    code, _, err = netscanctl(hooks_api, capfd, "webhooks", "update", "x")
    assert code == 1 and "nothing to change" in err
