"""Cron cadence in UTC (expressions are validated by the config model)."""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import croniter


def next_run(expression: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that ``expression`` names, in UTC."""
    start = after.astimezone(UTC)
    upcoming = croniter(expression, start).get_next(datetime)
    assert isinstance(upcoming, datetime)
    return upcoming.astimezone(UTC)
