"""The probe registry: one entry per plan kind, and what the rest of the engine reads of it."""

from __future__ import annotations

import dataclasses

import pytest

from netscand.engine import bpf
from netscand.engine.probes import PROBES, register, reply_clauses, tcp_syn


def test_a_kind_is_one_probe_types() -> None:
    impostor = dataclasses.replace(tcp_syn.PROBE, name="impostor")
    with pytest.raises(ValueError, match="probe kind 1 is tcp_syn's, not impostor's"):
        register(impostor)
    assert PROBES[1] is tcp_syn.PROBE


def test_a_kind_fits_the_plan_headers_byte() -> None:
    for kind in (0, 256):
        with pytest.raises(ValueError, match=f"probe kind {kind} of wide is not in 1-255"):
            register(dataclasses.replace(tcp_syn.PROBE, name="wide", kind=kind))
    assert set(PROBES) == {1, 2, 3, 4, 5, 6}


def test_reply_clauses_the_receive_filter_cannot_hold_are_refused_at_register() -> None:
    """BPF's conditional jumps are one byte: past 255 rows the first clauses cannot reach
    "accept". Refused here, with the probe named, rather than in every worker on its first plan."""
    long = tuple((bpf.JEQ, 0, "next", port) for port in range(300)) + bpf.ACCEPT
    bulky = dataclasses.replace(tcp_syn.PROBE, name="bulky", kind=200, replies=lambda lo, hi: (long,))
    with pytest.raises(ValueError, match="probe bulky's reply clauses make the receive filter too long: "
                                         r"receive filter of \d+ rows: row \d+ jumps \d+ rows, past BPF's 255"):
        register(bulky)
    assert set(PROBES) == {1, 2, 3, 4, 5, 6}
    assert bpf.reply_filter(reply_clauses(61440, 61440 + 1023), 0)  # the registered ones still fit
