"""The configuration file: typed sections, and one line naming the key for each bad value."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec
import pytest

from netscand import config
from netscand.config import Config, ConfigError

SHIPPED = Path(__file__).resolve().parents[1] / "conf" / "netscand.toml"


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "netscand.toml"
    path.write_text(text)
    return config.load(path)


def test_the_shipped_file_shows_every_setting_with_its_default() -> None:
    assert config.load(SHIPPED) == Config()
    shown = tomllib.loads(SHIPPED.read_text())
    for section in msgspec.structs.fields(Config):
        names = {f.name for f in msgspec.structs.fields(getattr(Config(), section.name))}
        assert set(shown[section.name]) == names, section.name


def test_values_are_typed_and_a_file_overrides_only_what_it_sets(tmp_path: Path) -> None:
    cfg = load(tmp_path, '[engine]\nrate = 1000\nping_ack_ports = ""\n[policy]\nallowed_targets = ["198.18.0.0/15"]\n')
    assert cfg.engine.rate == 1000.0 and isinstance(cfg.engine.rate, float)
    assert cfg.engine.ping_ack_ports == "" and cfg.engine.ping_syn_ports == "443"
    assert cfg.policy.allowed_targets == ["198.18.0.0/15"] and cfg.daemon == Config().daemon


@pytest.mark.parametrize("text, line", [
    ('[policy]\nmax_rate = "fast"', 'policy.max_rate: expected a number > 0, got "fast"'),
    ("[policy]\nmax_rate = 0", "policy.max_rate: expected a number > 0, got 0"),
    ("[daemon]\ntls_handshake_timeout = nan", "daemon.tls_handshake_timeout: expected a number > 0, got NaN"),
    ("[engine]\nworkers = -1", "engine.workers: expected an integer >= 0, got -1"),
    ("[engine]\nretries = true", "engine.retries: expected an integer >= 0, got true"),
    ("[daemon]\nmax_running_scans = 0", "daemon.max_running_scans: expected an integer >= 1, got 0"),
    ("[engine]\nping_icmp = 1", "engine.ping_icmp: expected true or false, got 1"),
    ('[policy]\nallowed_targets = ["10.0.0.0/8", "lab"]',
     'policy.allowed_targets[1]: expected an IPv4 CIDR block such as "10.0.0.0/8", got "lab"'),
    ("[policy]\nexcluded_targets = [3]", "policy.excluded_targets[0]: expected a string, got 3"),
    ('[policy]\nsocket_only_targets = "127.0.0.0/8"',
     'policy.socket_only_targets: expected a list of IPv4 CIDR blocks such as "10.0.0.0/8", got "127.0.0.0/8"'),
    ('[engine]\nping_syn_ports = "22,70000"',
     'engine.ping_syn_ports: expected a port list such as "22,80,8000-8100" ("" for none), got "22,70000": port out'),
    ('[daemon]\nsocket_mode = "rw"', 'daemon.socket_mode: expected octal permissions such as "0660", got "rw"'),
    ('[daemon]\nlisten = "localhost"', 'daemon.listen: expected HOST:PORT, or "" for none, got "localhost"'),
    ('[daemon]\nlog_format = "xml"', 'daemon.log_format: expected one of "auto", "console", "json", got "xml"'),
    ('[daemon]\nuser = ""', 'daemon.user: expected a non-empty string, got ""'),
    ("[daemon]\nstate_dir = 1979-05-27T07:32:00Z", 'daemon.state_dir: expected a string, got "1979-05-27'),
    ('[daemon]\ncolour = "red"', "daemon.colour: unknown setting"),
    ("[colour]\nred = 1", "colour: unknown section"),
    ("engine = 3", "engine: expected a table, got 3"),
])
def test_a_bad_value_is_one_line_naming_its_key(tmp_path: Path, text: str, line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'netscand.toml'}: {line}") and "\n" not in message


@pytest.mark.parametrize("mode", ["0660", "660", "00660", "02770", "1660", "7777", "07777"])
def test_a_socket_mode_is_what_chmod_reads(tmp_path: Path, mode: str) -> None:
    assert load(tmp_path, f'[daemon]\nsocket_mode = "{mode}"').daemon.socket_mode == mode


@pytest.mark.parametrize("mode", ["-1", "0o7", "0o660", "66", "8", "0668", "17777", "0660\\n", ""])
def test_a_socket_mode_that_is_no_mode_is_refused(tmp_path: Path, mode: str) -> None:
    with pytest.raises(ConfigError, match="daemon.socket_mode: expected octal permissions"):
        load(tmp_path, f'[daemon]\nsocket_mode = "{mode}"')


@pytest.mark.parametrize("listen", ["\\n", "h:80\\n", "8443", "h:", "h:x"])
def test_a_listener_that_is_no_host_and_port_is_refused(tmp_path: Path, listen: str) -> None:
    with pytest.raises(ConfigError, match="daemon.listen: expected HOST:PORT"):
        load(tmp_path, f'[daemon]\nlisten = "{listen}"')


def test_a_long_value_is_cut_short(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f'[daemon]\nlog_format = "{"x" * 10_000}"')
    assert len(str(caught.value)) < len(str(tmp_path)) + 200


def test_flags_over_the_file_obey_the_same_rules() -> None:
    cfg = config.override(Config(), "daemon", listen="", state_dir="/tmp/x", socket=None)
    assert (cfg.daemon.listen, cfg.daemon.state_dir, cfg.daemon.socket) == ("", "/tmp/x", Config().daemon.socket)
    config.check(cfg, "command line")
    with pytest.raises(ConfigError, match=r'^command line: engine.workers: expected an integer >= 0, got -2$'):
        config.check(config.override(cfg, "engine", workers=-2), "command line")


def test_an_unreadable_or_malformed_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read .*missing.toml: No such file or directory"):
        config.load(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="netscand.toml: Expected '=' after a key"):
        load(tmp_path, "[engine]\nrate\n")
