"""Cron cadence in UTC.

Two forms are accepted:

- five fields, standard cron: ``minute hour day-of-month month day-of-week``
  (``0 */6 * * *``: every six hours on the hour);
- six fields, with seconds *first* as in Quartz and Spring: ``second minute hour
  day-of-month month day-of-week`` (``*/30 * * * * *``: every 30 seconds).

croniter alone reads a sixth field as seconds *last*; the six-field form here is always
seconds first, so ``*/2 * * * * *`` means every two seconds, never "every second of every
other minute".
"""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import croniter

_STANDARD_FIELDS = 5
_WITH_SECONDS_FIELDS = 6


def _seconds_first(expression: str) -> bool:
    return len(expression.split()) == _WITH_SECONDS_FIELDS


def schedule_problem(expression: str) -> str | None:
    """Why ``expression`` is not a usable schedule; None when it is."""
    fields = len(expression.split())
    if fields not in (_STANDARD_FIELDS, _WITH_SECONDS_FIELDS):
        return (
            f"{expression!r} has {fields} fields: expected five (minute hour day month weekday)"
            " or six (second minute hour day month weekday)"
        )
    if not croniter.is_valid(expression, strict=True, second_at_beginning=fields == 6):
        return f"{expression!r} is not a valid cron expression, or names a date that never comes"
    return None


def next_run(expression: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that ``expression`` names, in UTC."""
    start = after.astimezone(UTC)
    upcoming = croniter(expression, start, second_at_beginning=_seconds_first(expression)).get_next(
        datetime
    )
    assert isinstance(upcoming, datetime)
    return upcoming.astimezone(UTC)
