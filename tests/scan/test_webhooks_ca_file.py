"""webhooks.ca_file: a real HTTPS receiver on 127.0.0.1 whose certificate a test CA signed is
refused without it and delivered to with it (taken at the next attempt after a reload, as the
other [webhooks] settings), and a file that would fail deliveries fails loading the config."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import certifi
import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from msgspec.structs import replace

from netscand import config
from netscand.lab.harness import ensure_daemon_user
from netscand.scan import trust
from tests.scan.test_webhooks import LOOPBACK, Harness, publish, run, until, verified
from tests.scan.webhook_receiver import receiving


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: ec.EllipticCurvePrivateKey,
                 ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    built = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        built = built.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return built.sign(signer, hashes.SHA256())


@pytest.fixture
def private_ca(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A test CA's certificate file, and a server context whose certificate it signed."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("netscand test CA", ca_key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                                 "netscand test CA")]), ca_key, True)
    leaf = _certificate("receiver", leaf_key, ca.subject, ca_key, False)
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(pem))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (tmp_path / "leaf.key").write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    return tmp_path / "ca.pem", server


def test_a_receiver_on_a_private_ca_is_refused_without_ca_file_and_delivered_to_with_it(
        tmp_path: Path, private_ca: tuple[Path, ssl.SSLContext]) -> None:
    ca_file, server = private_ca

    async def scenario() -> None:
        h = Harness(tmp_path / "netscand.db")
        with receiving(tls=server) as receiver:
            assert receiver.url.startswith("https://")
            hook = h.hook(receiver.url, ["*"])
            h.start()
            publish(h, "scan.state", {"id": "s1", "status": "completed"}, scan_id="s1")
            await until(lambda: bool(h.log(hook["id"])) and h.log(hook["id"])[0]["attempts"] >= 2)
            (refused,) = h.log(hook["id"])
            assert refused["status"] == "pending" and "CERTIFICATE_VERIFY_FAILED" in refused["last_error"]
            assert receiver.received == []
            # A reload that names the CA file: the next attempt trusts it.
            h.limits.now = dataclasses.replace(h.limits.now, webhooks=replace(LOOPBACK, ca_file=str(ca_file)))
            await until(lambda: len(receiver.accepted()) == 1)
            assert verified(receiver)[0]["data"] == {"id": "s1", "status": "completed"}
            await until(lambda: h.log(hook["id"])[0]["status"] == "delivered")
            await h.stop()

    run(scenario)


def test_a_ca_file_removed_after_loading_is_the_deliverys_reason_not_a_crash(
        tmp_path: Path, private_ca: tuple[Path, ssl.SSLContext]) -> None:
    ca_file, server = private_ca
    kept = ca_file.read_bytes()
    ca_file.unlink()  # after the config was loaded: nothing checks it again until a reload

    async def scenario() -> None:
        h = Harness(tmp_path / "netscand.db", replace(LOOPBACK, ca_file=str(ca_file)))
        with receiving(tls=server) as receiver, structlog.testing.capture_logs() as logs:
            hook = h.hook(receiver.url, ["*"])
            h.start()
            publish(h, "scan.state", {"id": "s1", "status": "completed"}, scan_id="s1")
            await until(lambda: bool(h.log(hook["id"])) and h.log(hook["id"])[0]["attempts"] >= 2)
            assert h.log(hook["id"])[0]["last_error"] == \
                f'webhooks.ca_file: cannot read "{ca_file}": No such file or directory'
            assert not [e for e in logs if e["event"].endswith("_crashed") or "exc_info" in e]
            # Put back, it is read again at the next attempt: a context that failed is not kept.
            ca_file.write_bytes(kept)
            await until(lambda: h.log(hook["id"])[0]["status"] == "delivered")
            await h.stop()

    run(scenario)


def test_attempts_after_a_reload_make_one_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = []

    def counted(ca_file: str) -> ssl.SSLContext:
        made.append(ca_file)
        time.sleep(0.1)  # as reading the system's store takes a while: the others arrive meanwhile
        return ssl.create_default_context()

    monkeypatch.setattr(trust, "client_context", counted)

    async def scenario() -> None:
        h = Harness(tmp_path / "netscand.db")
        first = await asyncio.gather(*(h.sender._context(LOOPBACK) for _ in range(8)))
        reloaded = replace(LOOPBACK, timeout=3.0)
        second = await asyncio.gather(*(h.sender._context(reloaded) for _ in range(8)))
        assert len(made) == 2 and len({id(c) for c in first}) == 1 and len({id(c) for c in second}) == 1
        h.store.close()

    run(scenario)


def test_a_ca_file_is_loaded_with_the_config(tmp_path: Path, private_ca: tuple[Path, ssl.SSLContext]) -> None:
    ca_file, _ = private_ca
    path = tmp_path / "netscand.toml"
    path.write_text(f'[webhooks]\nca_file = "{ca_file}"\n')
    assert config.load(path).webhooks.ca_file == str(ca_file)
    assert config.WebhooksConfig().ca_file == ""  # the default CAs alone


@pytest.mark.parametrize("name, said", [
    ("missing.pem", 'webhooks.ca_file: cannot read "{}": No such file or directory'),
    (".", 'webhooks.ca_file: cannot read "{}": Is a directory'),
    ("netscand.toml", 'webhooks.ca_file: expected a PEM file of CA certificates, got "{}" (NO_CERTIFICATE_OR_CRL_FOUND)'),
])
def test_a_ca_file_that_cannot_be_used_is_a_one_line_config_error(tmp_path: Path, name: str, said: str) -> None:
    path = tmp_path / "netscand.toml"
    path.write_text(f'[webhooks]\nca_file = "{tmp_path / name}"\n')
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    assert str(caught.value) == f"{path}: " + said.format(tmp_path / name)


def test_a_ca_file_the_daemons_user_cannot_read_stops_its_start_in_one_line(netns: str) -> None:
    # Root reads it, the daemon's user does not: the start checks it as that user, after the switch.
    ensure_daemon_user()
    where = Path(tempfile.mkdtemp(prefix="netscand-ca-", dir="/tmp"))
    try:
        where.chmod(0o755)
        (where / "ca.pem").write_bytes(Path(certifi.where()).read_bytes())
        (where / "ca.pem").chmod(0o600)
        (where / "netscand.toml").write_text(f'[daemon]\nlisten = ""\n[webhooks]\nca_file = "{where / "ca.pem"}"\n')
        out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-m", "netscand", "serve", "--config",
                              str(where / "netscand.toml"), "--state-dir", str(where / "state"), "--socket",
                              str(where / "netscand.sock")], capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 1
        assert out.stderr == (f'netscand: {where / "netscand.toml"}: webhooks.ca_file: cannot read '
                              f'"{where / "ca.pem"}": Permission denied\n')
    finally:
        shutil.rmtree(where)
