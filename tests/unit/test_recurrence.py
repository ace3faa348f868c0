"""Recurrence: the dates a series books, on the practice's wall clock (R-B2)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.diary.recurrence import (
    MAX_OCCURRENCES,
    EmptySeries,
    Frequency,
    Rule,
    TooManyOccurrences,
    expand,
    single,
)

LONDON = ZoneInfo("Europe/London")
HOUR = timedelta(minutes=50)


def _local(moments: list[datetime], zone: ZoneInfo = LONDON) -> list[str]:
    return [m.astimezone(zone).strftime("%Y-%m-%d %H:%M") for m in moments]


def test_weekly_series_keeps_ten_oclock_across_both_clock_changes() -> None:
    # R-B2: last Sunday of March 2026 is the 29th, of October the 25th.
    first = datetime(2026, 3, 16, 10, 0, tzinfo=LONDON)
    spring = expand(first, HOUR, Rule(Frequency.WEEKLY, date(2026, 4, 6)), "Europe/London")
    assert _local([o.starts_at for o in spring]) == [
        "2026-03-16 10:00",
        "2026-03-23 10:00",
        "2026-03-30 10:00",
        "2026-04-06 10:00",
    ]
    # Stored in UTC: the instant moves by an hour when British Summer Time starts.
    assert [o.starts_at.hour for o in spring] == [10, 10, 9, 9]
    assert all(o.starts_at.tzinfo == UTC for o in spring)

    autumn_first = datetime(2026, 10, 12, 10, 0, tzinfo=LONDON)
    autumn = expand(autumn_first, HOUR, Rule(Frequency.WEEKLY, date(2026, 11, 2)), "Europe/London")
    assert _local([o.starts_at for o in autumn]) == [
        "2026-10-12 10:00",
        "2026-10-19 10:00",
        "2026-10-26 10:00",
        "2026-11-02 10:00",
    ]
    assert [o.starts_at.hour for o in autumn] == [9, 9, 10, 10]


def test_each_occurrence_lasts_the_duration_and_is_numbered() -> None:
    first = datetime(2026, 3, 27, 23, 30, tzinfo=LONDON)
    series = expand(first, HOUR, Rule(Frequency.DAILY, date(2026, 3, 30)), "Europe/London")
    assert [o.position for o in series] == [1, 2, 3, 4]
    assert all(o.ends_at - o.starts_at == HOUR for o in series)
    assert _local([o.starts_at for o in series])[2] == "2026-03-29 23:30"


def test_every_two_weeks() -> None:
    first = datetime(2026, 1, 5, 9, 0, tzinfo=LONDON)
    series = expand(first, HOUR, Rule(Frequency.WEEKLY, date(2026, 2, 28), 2), "Europe/London")
    assert [o.starts_at.date() for o in series] == [
        date(2026, 1, 5),
        date(2026, 1, 19),
        date(2026, 2, 2),
        date(2026, 2, 16),
    ]


def test_monthly_by_date_uses_the_last_day_of_shorter_months() -> None:
    first = datetime(2026, 1, 31, 14, 0, tzinfo=LONDON)
    series = expand(
        first, HOUR, Rule(Frequency.MONTHLY_BY_DATE, date(2026, 5, 31)), "Europe/London"
    )
    assert [o.starts_at.astimezone(LONDON).date().isoformat() for o in series] == [
        "2026-01-31",
        "2026-02-28",
        "2026-03-31",
        "2026-04-30",
        "2026-05-31",
    ]
    assert {o.starts_at.astimezone(LONDON).hour for o in series} == {14}


def test_monthly_by_date_on_an_ordinary_day() -> None:
    first = datetime(2026, 1, 15, 14, 0, tzinfo=LONDON)
    series = expand(
        first, HOUR, Rule(Frequency.MONTHLY_BY_DATE, date(2026, 4, 14)), "Europe/London"
    )
    assert [o.starts_at.astimezone(LONDON).day for o in series] == [15, 15, 15]


def test_monthly_by_weekday_keeps_the_nth_weekday() -> None:
    # 10 February 2026 is the 2nd Tuesday.
    first = datetime(2026, 2, 10, 11, 0, tzinfo=LONDON)
    series = expand(
        first, HOUR, Rule(Frequency.MONTHLY_BY_WEEKDAY, date(2026, 5, 31)), "Europe/London"
    )
    local = [o.starts_at.astimezone(LONDON) for o in series]
    assert [d.date().isoformat() for d in local] == [
        "2026-02-10",
        "2026-03-10",
        "2026-04-14",
        "2026-05-12",
    ]
    assert all(d.weekday() == 1 and 8 <= d.day <= 14 and d.hour == 11 for d in local)


def test_monthly_by_weekday_from_a_fifth_weekday_means_the_last() -> None:
    # 29 January 2026 is the 5th (and last) Thursday.
    first = datetime(2026, 1, 29, 11, 0, tzinfo=LONDON)
    series = expand(
        first, HOUR, Rule(Frequency.MONTHLY_BY_WEEKDAY, date(2026, 4, 30)), "Europe/London"
    )
    assert [o.starts_at.astimezone(LONDON).day for o in series] == [29, 26, 26, 30]


def test_at_most_104_occurrences() -> None:
    first = datetime(2026, 1, 1, 9, 0, tzinfo=LONDON)
    exactly = expand(first, HOUR, Rule(Frequency.DAILY, date(2026, 4, 14)), "Europe/London")
    assert len(exactly) == MAX_OCCURRENCES
    with pytest.raises(TooManyOccurrences):
        expand(first, HOUR, Rule(Frequency.DAILY, date(2026, 4, 15)), "Europe/London")
    # A far end date is refused without building the whole list.
    with pytest.raises(TooManyOccurrences):
        expand(first, HOUR, Rule(Frequency.DAILY, date(9999, 12, 31)), "Europe/London")


def test_end_before_start_is_refused() -> None:
    first = datetime(2026, 1, 10, 9, 0, tzinfo=LONDON)
    with pytest.raises(EmptySeries):
        expand(first, HOUR, Rule(Frequency.WEEKLY, date(2026, 1, 9)), "Europe/London")


def test_until_is_inclusive_in_the_practice_time_zone() -> None:
    # 23:30 in London on 1 July is 22:30 UTC; the series may end on the 8th (local).
    first = datetime(2026, 7, 1, 23, 30, tzinfo=LONDON)
    series = expand(first, HOUR, Rule(Frequency.WEEKLY, date(2026, 7, 8)), "Europe/London")
    assert len(series) == 2


def test_single_is_one_utc_occurrence() -> None:
    start = datetime(2026, 6, 1, 10, 0, tzinfo=LONDON)
    (only,) = single(start, HOUR)
    assert only.starts_at == start and only.starts_at.tzinfo == UTC and only.position == 1


@settings(max_examples=60, deadline=None)
@given(
    zone=st.sampled_from(["Europe/London", "America/New_York", "Australia/Sydney", "UTC"]),
    day=st.dates(min_value=date(2025, 1, 1), max_value=date(2030, 12, 31)),
    hour=st.integers(min_value=7, max_value=19),
    frequency=st.sampled_from(list(Frequency)),
    interval=st.integers(min_value=1, max_value=4),
)
def test_wall_clock_time_never_drifts(
    zone: str, day: date, hour: int, frequency: Frequency, interval: int
) -> None:
    # R-B2, for any zone and rule: every occurrence is at the first one's local time.
    tz = ZoneInfo(zone)
    first = datetime(day.year, day.month, day.day, hour, 0, tzinfo=tz)
    span = timedelta(days=100 if frequency is Frequency.DAILY else 400)  # within 104
    series = expand(first, HOUR, Rule(frequency, day + span, interval), zone)
    assert series[0].starts_at == first
    local = [o.starts_at.astimezone(tz) for o in series]
    assert {(d.hour, d.minute) for d in local} == {(hour, 0)}
    starts = [o.starts_at for o in series]
    assert starts == sorted(set(starts))
    assert len(series) <= MAX_OCCURRENCES
