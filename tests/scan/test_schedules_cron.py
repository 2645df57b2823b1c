"""Cron expressions as schedules take them: five fields in UTC, each refusal in plain words, the
reading total over any text; and the scheduler's decision at the calendar's edges."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netscand.scan.schedules import GRACE, MISSED_COUNTED, cron_error, decide, next_due


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize("cron", ["* * * * *", "0 2 * * *", "*/15 9-17 * * mon-fri", "0 0 1 jan,jul *",
                                  "0 0 L * *", "0 0 * * 5#3", "0 0 29 2 *", "5,35 */2 1-7 * 0"])
def test_valid_expressions_are_taken(cron: str) -> None:
    assert cron_error(cron) is None


@pytest.mark.parametrize("cron, words", [
    ("* * * *", "cron needs five fields (minute hour day-of-month month day-of-week), not 4"),
    ("0 * * * * *", "not 6"),  # croniter's seconds field: not a schedule's
    ("", "not 0"),
    ("60 * * * *", "out of range"),
    ("0 24 * * *", "out of range"),
    ("0 0 * 13 *", "out of range"),
    ("0 0 * * 8", "out of range"),
    ("*/0 * * * *", "step '0'"),
    ("a b c d e", "a field is not one cron takes"),
    ("0 0 31 2 *", "never comes due"),
    ("0 0 30 feb *", "never comes due"),
])
def test_refusals_say_why(cron: str, words: str) -> None:
    why = cron_error(cron)
    assert why is not None and words in why and "[" not in why


@given(st.text(max_size=60))
@settings(max_examples=500, deadline=None)
def test_reading_any_text_says_yes_or_why(text: str) -> None:
    why = cron_error(text)
    assert why is None or isinstance(why, str)


_FIELD = st.one_of(st.just("*"), st.integers(0, 70).map(str), st.sampled_from(["*/5", "1-5", "L", "5#2", "mon",
                                                                             "jan", "1,2", "7-1", "?", "H"]))


@given(st.lists(_FIELD, min_size=5, max_size=5).map(" ".join))
@settings(max_examples=300, deadline=None)
def test_reading_cron_like_text_says_yes_or_why(cron: str) -> None:
    why = cron_error(cron)
    if why is None:  # then the scheduler can work with it
        assert next_due(cron, at("2026-03-02T10:00:00Z")) > at("2026-03-02T10:00:00Z")


def test_the_next_due_time_is_in_utc_and_after_now() -> None:
    assert next_due("0 2 * * *", at("2026-03-02T02:00:00Z")) == at("2026-03-03T02:00:00Z")
    assert next_due("0 0 29 2 *", at("2026-03-01T00:00:00Z")) == at("2028-02-29T00:00:00Z")  # leap day
    assert next_due("0 0 L * *", at("2026-02-01T00:00:00Z")) == at("2026-02-28T00:00:00Z")
    # Day of month and day of week both restricted: either one (as cron has always read them).
    assert next_due("0 0 13 * fri", at("2026-03-02T00:00:00Z")) == at("2026-03-06T00:00:00Z")


def test_a_leap_day_schedule_back_after_years_runs_the_one_missed() -> None:
    back = at("2026-06-01T12:00:00Z")  # the daemon starts again, and its scheduler with it
    decision = decide("0 0 29 2 *", "run_once", at("2024-02-29T00:00:00Z"), back, started=back)
    assert decision.runs == [] and decision.start is not None
    assert (decision.start["due_at"], decision.start["outcome"], decision.start["missed"]) == \
        ("2024-02-29T00:00:00Z", "run_missed", 1)
    assert decision.next_due == at("2028-02-29T00:00:00Z")


@given(st.sampled_from(["* * * * *", "*/7 * * * *", "0 * * * *", "30 2 * * mon", "0 0 1 * *", "0 0 29 2 *"]),
       st.sampled_from(["run_once", "skip"]),
       st.integers(0, 5 * 365 * 24 * 3600))
@settings(max_examples=300, deadline=None)
def test_a_decision_is_bounded_and_looks_forward(cron: str, missed: str, late_s: int) -> None:
    due = next_due(cron, at("2026-01-01T00:00:00Z"))
    now = due + timedelta(seconds=late_s)
    decision = decide(cron, missed, due, now, started=now)  # a daemon back at `now`
    rows = decision.runs + ([decision.start] if decision.start else [])
    assert 1 <= len(rows) <= 2 and decision.next_due > now
    assert all(at(r["due_at"]) <= now and r["missed"] <= MISSED_COUNTED for r in rows)
    if decision.start and decision.start["outcome"] == "started":
        assert now - at(decision.start["due_at"]) <= GRACE
    if missed == "skip" and late_s > GRACE.total_seconds() and decision.start:
        assert decision.start["outcome"] == "started"  # the due time on time, not the missed ones
