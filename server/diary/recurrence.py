"""Which dates a recurring series books: ``dateutil.rrule`` on the practice's wall clock.

The rule runs on naive local times in the practice's time zone and each occurrence is then
placed in that zone, so a 10:00 series stays at 10:00 when the clocks change (its UTC time
moves by an hour). Stored times are UTC.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from dateutil import rrule

MAX_OCCURRENCES = 104


class Frequency(enum.StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"  # with interval N: "every N weeks"
    MONTHLY_BY_DATE = "monthly_by_date"  # e.g. the 15th of each month
    MONTHLY_BY_WEEKDAY = "monthly_by_weekday"  # e.g. the 2nd Tuesday of each month


@dataclass(frozen=True)
class Rule:
    frequency: Frequency
    until: date  # last day of the series, inclusive, in the practice's time zone
    interval: int = 1


@dataclass(frozen=True)
class Occurrence:
    position: int  # 1-based
    starts_at: datetime  # UTC
    ends_at: datetime  # UTC


class TooManyOccurrences(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"a series may have at most {limit} appointments; choose an earlier end")
        self.limit = limit


class EmptySeries(ValueError):
    """The end date is before the first appointment."""


def single(starts_at: datetime, duration: timedelta) -> list[Occurrence]:
    start = starts_at.astimezone(UTC)
    return [Occurrence(1, start, start + duration)]


def expand(
    first_start: datetime,
    duration: timedelta,
    rule: Rule,
    timezone: str,
    limit: int = MAX_OCCURRENCES,
) -> list[Occurrence]:
    """Every occurrence of ``rule`` from ``first_start`` (tz-aware) up to ``rule.until``."""
    zone = ZoneInfo(timezone)
    local_start = first_start.astimezone(zone).replace(tzinfo=None)
    if rule.until < local_start.date():
        raise EmptySeries("the series ends before its first appointment")
    anchor = _monthly_anchor(rule.frequency, local_start)
    recurrence = rrule.rrule(
        _FREQUENCIES[rule.frequency],
        dtstart=local_start,
        interval=rule.interval,
        until=datetime.combine(rule.until, time.max),
        bymonthday=anchor.bymonthday,
        bysetpos=anchor.bysetpos,
        byweekday=anchor.byweekday,
    )
    occurrences: list[Occurrence] = []
    for position, local in enumerate(recurrence, start=1):
        if position > limit:
            raise TooManyOccurrences(limit)
        # fold=0: in the repeated autumn hour, the first (summer-time) reading is meant.
        start = local.replace(tzinfo=zone).astimezone(UTC)
        occurrences.append(Occurrence(position, start, start + duration))
    return occurrences


_FREQUENCIES: dict[Frequency, Literal[0, 1, 2, 3, 4, 5, 6]] = {
    Frequency.DAILY: rrule.DAILY,
    Frequency.WEEKLY: rrule.WEEKLY,
    Frequency.MONTHLY_BY_DATE: rrule.MONTHLY,
    Frequency.MONTHLY_BY_WEEKDAY: rrule.MONTHLY,
}


@dataclass(frozen=True)
class _Anchor:
    """Which day of the month a monthly rule keeps (all None: rrule's own default)."""

    bymonthday: int | tuple[int, int] | None = None
    bysetpos: int | None = None
    byweekday: rrule.weekday | None = None


def _monthly_anchor(frequency: Frequency, local_start: datetime) -> _Anchor:
    if frequency is Frequency.MONTHLY_BY_DATE:
        if local_start.day <= 28:
            return _Anchor(bymonthday=local_start.day)
        # The 29th-31st: in a shorter month use its last day rather than skip the month
        # (plain RFC 5545 skips it). The earlier of (day, last day) is the one kept.
        return _Anchor(bymonthday=(local_start.day, -1), bysetpos=1)
    if frequency is Frequency.MONTHLY_BY_WEEKDAY:
        nth = (local_start.day - 1) // 7 + 1
        weekday = rrule.weekdays[local_start.weekday()]
        # A fifth weekday does not exist in most months: "the last Tuesday" is what is meant.
        return _Anchor(byweekday=weekday(-1 if nth == 5 else nth))
    return _Anchor()
