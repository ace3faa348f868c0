"""The real domain of input values, beyond what a type can say; checked once at the edge.

msgspec checks each body's shape and the limits a field declares. What a type cannot say is
checked here, for every decoded body (``server.http.read_body``) and every query parameter
(``server.query``) alike:

- text never holds a NUL character (PostgreSQL cannot store one) or a lone surrogate (not
  UTF-8: asyncpg cannot send it);
- a date or moment lies in the years the product can mean (``EARLIEST_DAY``..``LATEST_DAY``):
  asyncpg maps ``0001-01-01`` and ``9999-12-31`` to -/+ infinity and a day past them
  overflows, so a calendar-edge date was a 500 or a query that never ended.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta

import msgspec

EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2099, 12, 31)
_EARLIEST_MOMENT = datetime.combine(EARLIEST_DAY, time(), UTC)
_LATEST_MOMENT = datetime.combine(LATEST_DAY + timedelta(days=1), time(), UTC)
OUT_OF_RANGE = f"must lie between {EARLIEST_DAY.isoformat()} and {LATEST_DAY.isoformat()}"


def text_problem(value: str) -> str | None:
    """Why a string cannot be stored as text, or None when it can."""
    if "\x00" in value:
        return "must not contain a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text"
    return None


def day_in_range(day: date) -> bool:
    return EARLIEST_DAY <= day <= LATEST_DAY


def moment_in_range(moment: datetime) -> bool:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return _EARLIEST_MOMENT <= aware < _LATEST_MOMENT


def first_problem(value: object, path: str = "") -> tuple[str, str] | None:
    """``(dotted path, problem)`` of the first bad string, date or moment inside a decoded
    value (``recurrence.until``, ``roles.0``), or None when all are good."""
    if isinstance(value, str):
        problem = text_problem(value)
        return (path, problem) if problem else None
    if isinstance(value, datetime):
        return None if moment_in_range(value) else (path, OUT_OF_RANGE)
    if isinstance(value, date):
        return None if day_in_range(value) else (path, OUT_OF_RANGE)
    children: list[tuple[str, object]] = []
    if isinstance(value, msgspec.Struct):
        children = [(name, getattr(value, name)) for name in value.__struct_fields__]
    elif isinstance(value, Mapping):
        for key, item in value.items():
            children += [(str(key), key), (str(key), item)]
    elif isinstance(value, list | tuple | set | frozenset):
        children = [(str(index), item) for index, item in enumerate(value)]
    for name, child in children:
        found = first_problem(child, f"{path}.{name}" if path else name)
        if found:
            return found
    return None
