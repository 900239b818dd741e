"""NCRONTAB schedules as Azure Functions timer triggers use them: six fields, seconds first.

::

    {second} {minute} {hour} {day} {month} {day-of-week}

Each field is a comma-separated list of items: ``*``, a value ``a``, a range ``a-b``,
a step over everything ``*/n``, over a range ``a-b/n`` or from a value to the end of
the field ``a/n``. Months and days of the week may also be written as three-letter
English names (``Jan``, ``Mon``), case-insensitive. Day of the week runs 0-6 with
Sunday 0. Times are UTC (Azure Functions evaluates schedules in UTC unless
``WEBSITE_TIME_ZONE`` is set, which this host does not support).

Day of month and day of week combine with AND, as in the NCrontab library the real
host uses (classic Unix cron uses OR when both are restricted).

    >>> schedule = CronSchedule.parse("0 */5 * * * *")
    >>> schedule.next_after(datetime(2024, 1, 1, 12, 3, 7, tzinfo=UTC))
    datetime.datetime(2024, 1, 1, 12, 5, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["CronError", "CronSchedule"]

# Every combination of day, month and weekday that can occur at all occurs within
# 28 years (the Gregorian weekday cycle between century years); a schedule with no
# occurrence in that window never fires.
_SEARCH_YEARS = 30

_MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_DAY_NAMES = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _Field("second", 0, 59, {}),
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day", 1, 31, {}),
    _Field("month", 1, 12, _MONTH_NAMES),
    _Field("day-of-week", 0, 6, _DAY_NAMES),
)
_FORMAT = "{second} {minute} {hour} {day} {month} {day-of-week}"


class CronError(ValueError):
    """An NCRONTAB expression that is malformed or never fires."""


@dataclass(frozen=True)
class CronSchedule:
    """A parsed NCRONTAB expression; ``next_after`` computes occurrences in UTC."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        """Parse ``expression``; raise ``CronError`` naming the problem."""
        parts = expression.split()
        if len(parts) != len(_FIELDS):
            raise CronError(
                f"NCRONTAB expression {expression!r} has {len(parts)} field(s); Azure "
                f"Functions needs six, seconds first: {_FORMAT}"
            )
        values = [
            _parse_field(part, spec, expression) for part, spec in zip(parts, _FIELDS, strict=True)
        ]
        schedule = cls(expression, *values)
        # Fail now, not at the first tick, for schedules like "0 0 0 30 2 *".
        schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))
        return schedule

    def matches(self, moment: datetime) -> bool:
        """Whether ``moment`` (UTC, to the second) is an occurrence."""
        moment = _as_utc(moment)
        return (
            moment.second in self.seconds
            and moment.minute in self.minutes
            and moment.hour in self.hours
            and self._day_matches(moment)
        )

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after ``moment``, as an aware UTC datetime.

        A naive ``moment`` is taken to be UTC.
        """
        start = _as_utc(moment)
        t = start.replace(microsecond=0) + timedelta(seconds=1)
        limit = start.year + _SEARCH_YEARS
        while t.year <= limit:
            if t.month not in self.months:
                t = _first_of_next_month(t)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t = t.replace(second=0) + timedelta(minutes=1)
            elif t.second not in self.seconds:
                t += timedelta(seconds=1)
            else:
                return t
        raise CronError(
            f"NCRONTAB expression {self.expression!r} never fires (no occurrence within "
            f"{_SEARCH_YEARS} years of {start:%Y-%m-%d}); check the day, month and "
            "day-of-week fields"
        )

    def _day_matches(self, moment: datetime) -> bool:
        weekday = (moment.weekday() + 1) % 7  # Python: Monday 0; NCRONTAB: Sunday 0
        return moment.day in self.days and weekday in self.weekdays


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _first_of_next_month(moment: datetime) -> datetime:
    if moment.month == 12:
        return moment.replace(year=moment.year + 1, month=1, day=1, hour=0, minute=0, second=0)
    return moment.replace(month=moment.month + 1, day=1, hour=0, minute=0, second=0)


def _parse_field(text: str, spec: _Field, expression: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        values.update(_parse_item(item, spec, expression))
    return frozenset(values)


def _parse_item(item: str, spec: _Field, expression: str) -> range:
    def fail(reason: str) -> CronError:
        return CronError(
            f"NCRONTAB expression {expression!r}: {spec.name} field item {item!r} {reason} "
            f"(allowed: *, a, a-b, */n, a-b/n, a/n with values {spec.low}-{spec.high})"
        )

    if not item:
        raise fail("is empty")
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) == 0:
            raise fail("has a step that is not a positive whole number")
        step = int(step_text)
    if base == "*":
        low, high = spec.low, spec.high
    elif "-" in base:
        first, _, last = base.partition("-")
        low, high = _value(first, spec, fail), _value(last, spec, fail)
        if low > high:
            raise fail(f"is a range that runs backwards ({low} > {high})")
    else:
        low = _value(base, spec, fail)
        # "a/n" runs from a to the end of the field; a lone "a" is just a.
        high = spec.high if slash else low
    return range(low, high + 1, step)


def _value(text: str, spec: _Field, fail: Callable[[str], CronError]) -> int:
    lowered = text.strip().lower()
    if lowered in spec.names:
        return spec.names[lowered]
    if not lowered.isdigit():
        raise fail(f"has {text!r}, which is not a number")
    value = int(lowered)
    if not spec.low <= value <= spec.high:
        raise fail(f"has {value}, outside {spec.low}-{spec.high}")
    return value
