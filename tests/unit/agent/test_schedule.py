"""The agent's cron cadence: five standard fields, or six with seconds first, always UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from croniter import croniter

from ocscan.agent.schedule import next_run, schedule_problem
from ocscan.config import ConfigError, parse_config

START = datetime(2024, 3, 1, 5, 59, 59, 500_000, tzinfo=UTC)


def runs(expression: str, after: datetime, count: int = 3) -> list[datetime]:
    times = []
    for _ in range(count):
        after = next_run(expression, after)
        times.append(after)
    return times


def test_five_fields_are_standard_cron_in_utc() -> None:
    assert runs("0 */6 * * *", START) == [
        datetime(2024, 3, 1, 6, tzinfo=UTC),
        datetime(2024, 3, 1, 12, tzinfo=UTC),
        datetime(2024, 3, 1, 18, tzinfo=UTC),
    ]


def test_six_fields_put_seconds_first() -> None:
    # croniter alone reads a sixth field as seconds last: every second of every other minute.
    plain = croniter("*/2 * * * * *", START)
    assert [plain.get_next(datetime) for _ in range(2)][1] == datetime(
        2024, 3, 1, 6, 0, 1, tzinfo=UTC
    )
    assert runs("*/2 * * * * *", START) == [
        datetime(2024, 3, 1, 6, 0, 0, tzinfo=UTC),
        datetime(2024, 3, 1, 6, 0, 2, tzinfo=UTC),
        datetime(2024, 3, 1, 6, 0, 4, tzinfo=UTC),
    ]
    assert runs("30 0 * * * *", START, 2) == [
        datetime(2024, 3, 1, 6, 0, 30, tzinfo=UTC),
        datetime(2024, 3, 1, 7, 0, 30, tzinfo=UTC),
    ]


def test_the_next_run_is_strictly_later_and_zone_independent() -> None:
    on_time = datetime(2024, 3, 1, 6, tzinfo=UTC)
    assert next_run("0 */6 * * *", on_time) == datetime(2024, 3, 1, 12, tzinfo=UTC)
    # The same instant written in another zone names the same run, in UTC.
    paris = on_time.astimezone(timezone(timedelta(hours=1)))
    upcoming = next_run("0 */6 * * *", paris)
    assert upcoming == datetime(2024, 3, 1, 12, tzinfo=UTC) and upcoming.tzinfo == UTC


@pytest.mark.parametrize("expression", ["0 */6 * * *", "*/30 * * * * *", "0 0 * * 1-5"])
def test_valid_schedules_are_accepted(expression: str) -> None:
    assert schedule_problem(expression) is None
    assert parse_config({"agent": {"schedule": expression}}).agent.schedule == expression


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("* * * *", "has 4 fields"),
        ("0 0 0 * * * 2030", "has 7 fields"),
        ("@hourly", "has 1 fields"),
        ("61 * * * * *", "not a valid cron expression"),
        ("0 25 * * *", "not a valid cron expression"),
        ("0 0 30 2 *", "never comes"),
    ],
)
def test_bad_schedules_are_refused_naming_the_key(expression: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=r"agent\.schedule: ") as caught:
        parse_config({"agent": {"schedule": expression}})
    assert reason in str(caught.value)


def test_renewals_must_fit_twice_in_the_lease() -> None:
    parse_config({"leader_election": {"lease_duration_seconds": 4, "renew_seconds": 2}})
    with pytest.raises(ConfigError, match=r"leader_election\.renew_seconds: 2\.5 is more than"):
        parse_config({"leader_election": {"lease_duration_seconds": 4, "renew_seconds": 2.5}})
