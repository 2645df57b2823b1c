"""The probe registry: one entry per plan kind, and what the rest of the engine reads of it."""

from __future__ import annotations

import dataclasses

import pytest

from netscand.engine.probes import PROBES, register, tcp_syn


def test_a_kind_is_one_probe_types() -> None:
    impostor = dataclasses.replace(tcp_syn.PROBE, name="impostor")
    with pytest.raises(ValueError, match="probe kind 1 is tcp_syn's, not impostor's"):
        register(impostor)
    assert PROBES[1] is tcp_syn.PROBE


def test_a_kind_fits_the_plan_headers_byte() -> None:
    for kind in (0, 256):
        with pytest.raises(ValueError, match=f"probe kind {kind} of wide is not in 1-255"):
            register(dataclasses.replace(tcp_syn.PROBE, name="wide", kind=kind))
    assert set(PROBES) == {1, 2, 3, 4}
