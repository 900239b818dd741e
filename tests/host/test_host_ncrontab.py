"""NCRONTAB parsing and next-occurrence computation (local/functions_host/ncrontab.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from local.functions_host.ncrontab import CronError, CronSchedule

UTC = dt.UTC


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def occurrences(expression: str, start: dt.datetime, count: int) -> list[dt.datetime]:
    schedule = CronSchedule.parse(expression)
    found = []
    moment = start
    for _ in range(count):
        moment = schedule.next_after(moment)
        found.append(moment)
    return found


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        # every second; strictly after the given moment, microseconds dropped
        ("* * * * * *", at(2024, 1, 1, 0, 0, 0), at(2024, 1, 1, 0, 0, 1)),
        (
            "*/1 * * * * *",
            dt.datetime(2024, 1, 1, 0, 0, 0, 500, tzinfo=UTC),
            at(2024, 1, 1, 0, 0, 1),
        ),
        # every minute at second 0 (the app's default reconcile schedule)
        ("0 */1 * * * *", at(2024, 1, 1, 12, 3, 7), at(2024, 1, 1, 12, 4, 0)),
        ("0 */5 * * * *", at(2024, 1, 1, 12, 3, 7), at(2024, 1, 1, 12, 5, 0)),
        # ranges, lists, stepped ranges
        ("0 0 9-17 * * *", at(2024, 1, 1, 17, 30, 0), at(2024, 1, 2, 9, 0, 0)),
        ("0 15,45 * * * *", at(2024, 1, 1, 10, 20, 0), at(2024, 1, 1, 10, 45, 0)),
        ("0 0 8-18/4 * * *", at(2024, 1, 1, 13, 0, 0), at(2024, 1, 1, 16, 0, 0)),
        ("10/20 * * * * *", at(2024, 1, 1, 0, 0, 11), at(2024, 1, 1, 0, 0, 30)),
        # day of week: Sunday is 0; 2024-01-01 is a Monday
        ("0 0 0 * * 0", at(2024, 1, 1, 0, 0, 0), at(2024, 1, 7, 0, 0, 0)),
        ("0 30 9 * * 1-5", at(2024, 1, 5, 10, 0, 0), at(2024, 1, 8, 9, 30, 0)),
        ("0 0 0 * * Sat", at(2024, 1, 1, 0, 0, 0), at(2024, 1, 6, 0, 0, 0)),
        # day of month and month, across a year end and into a leap day
        ("0 0 0 1 * *", at(2024, 12, 15, 0, 0, 0), at(2025, 1, 1, 0, 0, 0)),
        ("0 0 0 29 2 *", at(2024, 3, 1, 0, 0, 0), at(2028, 2, 29, 0, 0, 0)),
        ("0 0 12 1 Jan,Jul *", at(2024, 1, 2, 0, 0, 0), at(2024, 7, 1, 12, 0, 0)),
        # day of month AND day of week, as NCrontab: Friday the 13th
        ("0 0 0 13 * 5", at(2024, 1, 1, 0, 0, 0), at(2024, 9, 13, 0, 0, 0)),
    ],
)
def test_next_occurrence(expression: str, start: dt.datetime, expected: dt.datetime) -> None:
    assert CronSchedule.parse(expression).next_after(start) == expected


def test_a_run_of_occurrences() -> None:
    assert occurrences("*/20 * * * * *", at(2024, 1, 1, 23, 59, 30), 3) == [
        at(2024, 1, 1, 23, 59, 40),
        at(2024, 1, 2, 0, 0, 0),
        at(2024, 1, 2, 0, 0, 20),
    ]


def test_naive_times_are_utc_and_other_zones_are_converted() -> None:
    schedule = CronSchedule.parse("0 0 * * * *")
    plus_two = dt.timezone(dt.timedelta(hours=2))

    assert schedule.next_after(dt.datetime(2024, 1, 1, 10, 30)) == at(2024, 1, 1, 11, 0, 0)
    assert schedule.next_after(dt.datetime(2024, 1, 1, 10, 30, tzinfo=plus_two)) == at(
        2024, 1, 1, 9, 0, 0
    )


def test_matches() -> None:
    schedule = CronSchedule.parse("30 0 9 * * 1-5")

    assert schedule.matches(at(2024, 1, 1, 9, 0, 30))  # a Monday
    assert not schedule.matches(at(2024, 1, 6, 9, 0, 30))  # a Saturday
    assert not schedule.matches(at(2024, 1, 1, 9, 0, 31))


@pytest.mark.parametrize(
    ("expression", "complaint"),
    [
        ("0 */5 * * *", "has 5 field(s); Azure Functions needs six"),
        ("0 0 0 * * * *", "has 7 field(s)"),
        ("", "has 0 field(s)"),
        ("60 * * * * *", "second field item '60' has 60, outside 0-59"),
        ("* * 24 * * *", "hour field item '24' has 24, outside 0-23"),
        ("* * * 0 * *", "day field item '0' has 0, outside 1-31"),
        ("* * * * 13 *", "month field item '13' has 13, outside 1-12"),
        ("* * * * * 7", "day-of-week field item '7' has 7, outside 0-6"),
        ("*/0 * * * * *", "not a positive whole number"),
        ("*/x * * * * *", "not a positive whole number"),
        ("5-1 * * * * *", "runs backwards"),
        ("a * * * * *", "which is not a number"),
        ("1,,2 * * * * *", "is empty"),
        ("* * * ? * *", "which is not a number"),
        ("* * * L * *", "which is not a number"),
        ("0 0 0 30 2 *", "never fires"),
        ("0 0 0 31 4,6,9,11 *", "never fires"),
    ],
)
def test_invalid_expressions_are_clear_errors(expression: str, complaint: str) -> None:
    with pytest.raises(CronError) as raised:
        CronSchedule.parse(expression)

    assert complaint in str(raised.value)
    assert repr(expression) in str(raised.value)
