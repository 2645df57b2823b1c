"""Schedules: a cron expression and the start request it runs, and what each due time became."""

from __future__ import annotations

from sqlite_utils import Database


def delivers_only_changes(db: Database, scan_id: str) -> bool:
    """Whether the scan was started by a schedule that delivers only its changes (its webhooks
    get its change events and its end, not its progress, hosts and ports)."""
    rows = db.query("SELECT 1 FROM schedule_runs JOIN schedules ON schedules.id = schedule_runs.schedule_id "
                    "WHERE schedule_runs.scan_id = ? AND schedules.deliver = 'changes'", [scan_id])
    return next(iter(rows), None) is not None
