"""The CVE fixtures (fixtures/README.md) loaded into a real CveStore, once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from netscand.vuln.store import CveStore

FIXTURES = Path(__file__).parent / "fixtures"
NVD_LAB = FIXTURES / "nvd-lab.json"
TRACKER = FIXTURES / "debian-tracker.json"


@pytest.fixture(scope="session")
def lab_cves(tmp_path_factory: pytest.TempPathFactory) -> CveStore:
    store = CveStore(tmp_path_factory.mktemp("cve") / "cve.db")
    store.import_nvd([NVD_LAB])
    store.import_tracker(TRACKER)
    return store
