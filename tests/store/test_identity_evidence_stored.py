"""A device's identity evidence (its SSH host keys and TLS certificates, from service detection)
as the result document has it, stored and read back as the inventory's merge reads it."""

from __future__ import annotations

from pathlib import Path

import jsonschema

from netscand.api.openapi import document as openapi_document
from netscand.engine.shm import R_HOST, R_PORT, S_OPEN, Result
from netscand.profiling.services import ServiceInfo
from netscand.scan.persist import device_row
from netscand.scan.result import ScanResult
from netscand.store import Store
from netscand.store.compare import keys

IP = 0xC6130105  # 198.19.1.5
KEY = {"type": "ssh-ed25519", "fingerprint": "SHA256:V9/t7bx6MtdfDh+tVZIWG6xfPl5uq/vhHb2Hc2zI5dI"}
CERT = {"version": "TLSv1.3", "subject": "CN=web", "issuer": "CN=web", "not_after": "2030-01-01T00:00:00+00:00",
        "sha256": "ab" * 32}


def test_evidence_is_in_the_document_and_survives_the_store(tmp_path: Path) -> None:
    result = ScanResult()
    result.add(Result(R_HOST, 0, 0, 0, 1, 0, IP, 0, 0, 0, 0, b"\0" * 6, 0, b""), 0, "tcp")
    for number in (22, 443, 80):
        result.add(Result(R_PORT, S_OPEN, 64, 0, 1, 0, IP, number, 64240, 0, 0, b"\0" * 6, 0, b""), 0, "tcp")
    h = result.hosts[IP]
    h.services[22] = ServiceInfo("ssh", "OpenSSH", "9.2p1", extra={"hostkey": KEY})
    h.services[443] = ServiceInfo("https", "nginx", extra={"tls": CERT})
    h.services[80] = ServiceInfo("http", "nginx", extra={"tls": {}})  # none: nothing to tell
    device = result.device(h, profiling=True)
    assert device["host_keys"] == [{"port": 22, **KEY}]
    assert device["certificates"] == [{"port": 443, **{k: CERT[k] for k in ("sha256", "subject", "issuer",
                                                                          "not_after")}}]
    jsonschema.validate(device, {**openapi_document(), "$ref": "#/components/schemas/Device"})
    store = Store(tmp_path / "netscand.db")
    try:
        scan = store.create_scan({"id": "00000000-0000-4000-8000-000000000001", "target": "198.19.1.5",
                                  "profile": "deep", "created_at": "2026-03-15T10:00:00Z"})
        store.put_devices(scan["id"], [device_row(result, h, profiling=True, final=True)])
        [stored] = store.result(scan["id"])
    finally:
        store.close()
    assert stored["host_keys"] == device["host_keys"] and stored["certificates"] == device["certificates"]
    assert keys(stored) == [f"ssh:{KEY['fingerprint']}", f"tls:{CERT['sha256']}", "ip:198.19.1.5"]
