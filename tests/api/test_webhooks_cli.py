"""`netscanctl webhooks` against a real daemon's API over its Unix socket."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import orjson
import pytest

from netscand.cli import ctl
from netscand.config import WebhooksConfig
from tests.api.conftest import Api, ApiRunner


@pytest.fixture
def hooks_api(api_factory: ApiRunner) -> Api:
    return api_factory(webhooks=WebhooksConfig(allowed_destinations=["127.0.0.1/32"]))


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


SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_the_secret_comes_from_stdin_or_a_file_never_argv(hooks_api: Api, capfd: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(SECRET + "\n"))
    code, out, _ = netscanctl(hooks_api, capfd, "--json", "webhooks", "create", "http://127.0.0.1:9/h",
                              "--event", "*", "--secret-stdin")
    assert code == 0 and f'"secret": "{SECRET}"' in out
    (tmp_path / "secret").write_text(SECRET + "\n")
    code, out, _ = netscanctl(hooks_api, capfd, "--json", "webhooks", "create", "http://127.0.0.1:9/h",
                              "--event", "*", "--secret-file", str(tmp_path / "secret"))
    assert code == 0 and f'"secret": "{SECRET}"' in out
    code, _, err = netscanctl(hooks_api, capfd, "webhooks", "create", "http://127.0.0.1:9/h", "--event", "*",
                              "--secret-file", str(tmp_path / "missing"))
    assert code == 1 and "cannot read the secret from" in err and err.count("\n") == 1
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, err = netscanctl(hooks_api, capfd, "webhooks", "create", "http://127.0.0.1:9/h", "--event", "*",
                              "--secret-stdin")
    assert code == 1 and "no secret in standard input" in err
    with pytest.raises(SystemExit):  # argparse refuses it: a secret in argv would show in ps
        netscanctl(hooks_api, capfd, "webhooks", "create", "http://127.0.0.1:9/h", "--event", "*", "--secret", SECRET)


def test_update_names_the_webhooks_url_apart_from_the_daemons(hooks_api: Api,
                                                              capfd: pytest.CaptureFixture[str]) -> None:
    code, out, _ = netscanctl(hooks_api, capfd, "--json", "webhooks", "create", "http://127.0.0.1:9/h", "--event", "*")
    hook = orjson.loads(out[out.index("{\n"):out.index("\n}\n") + 2])
    code, out, _ = netscanctl(hooks_api, capfd, "webhooks", "update", hook["id"], "--hook-url", "http://127.0.0.1:7/n")
    assert code == 0 and "http://127.0.0.1:7/n" in out
    with pytest.raises(SystemExit):  # the statuses the API takes, from the one list of them
        netscanctl(hooks_api, capfd, "webhooks", "deliveries", hook["id"], "--status", "lost")
    assert "invalid choice: 'lost' (choose from 'pending', 'delivered', 'failed')" in capfd.readouterr().err
