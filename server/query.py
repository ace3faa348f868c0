"""Query parameters, typed and checked against their real domain (``server.validation``).

Every handler reads its query through these, so a parameter is never longer than its limit,
never holds a NUL, and a date is never outside the sane calendar; a bad one is a 400 naming
the parameter, before anything runs.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from typing import NoReturn
from zoneinfo import ZoneInfo

from aiohttp import web

from server.http import ApiError
from server.validation import OUT_OF_RANGE, day_in_range, moment_in_range, text_problem

MAX_QUERY_VALUE_CHARS = 2000


def invalid_parameter(name: str, message: str) -> NoReturn:
    raise ApiError(400, "invalid_parameter", message, field=name)


def query_text(request: web.Request, name: str, max_chars: int = MAX_QUERY_VALUE_CHARS) -> str:
    """A query parameter as text ("" when absent), at most ``max_chars`` long."""
    raw = request.query.get(name, "")
    if len(raw) > max_chars:
        invalid_parameter(name, f"{name} must be at most {max_chars} characters")
    problem = text_problem(raw)
    if problem:
        invalid_parameter(name, f"{name} {problem}")
    return raw


def int_in_range(name: str, raw: str, minimum: int, maximum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        invalid_parameter(name, f"{name} must be a whole number")
    if not minimum <= value <= maximum:
        invalid_parameter(name, f"{name} must be between {minimum} and {maximum}")
    return value


def query_int(request: web.Request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = query_text(request, name, 20)
    return int_in_range(name, raw, minimum, maximum) if raw else default


def query_day(request: web.Request, name: str) -> date | None:
    """``?name=YYYY-MM-DD`` within the sane calendar; None when absent."""
    raw = query_text(request, name, 10)
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        invalid_parameter(name, f"{name} must be a date like 2024-05-31")
    if not day_in_range(day):
        invalid_parameter(name, f"{name} {OUT_OF_RANGE}")
    return day


def query_moment(request: web.Request, name: str, zone: ZoneInfo) -> datetime | None:
    """``?name=`` as a UTC moment: a date (midnight in ``zone``) or an ISO date-time with its
    UTC offset, within the sane calendar; None when absent."""
    raw = query_text(request, name, 40)
    if len(raw) == 10:
        day = query_day(request, name)
        assert day is not None
        return datetime.combine(day, time(), zone).astimezone(UTC)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        invalid_parameter(name, f"{name}: expected YYYY-MM-DD or an ISO date-time")
    if moment.tzinfo is None:
        invalid_parameter(name, f"{name}: give the UTC offset")
    if not moment_in_range(moment):
        invalid_parameter(name, f"{name} {OUT_OF_RANGE}")
    return moment.astimezone(UTC)


def query_uuid(request: web.Request, name: str) -> uuid.UUID | None:
    raw = query_text(request, name, 36)
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        invalid_parameter(name, f"{name}: expected an id")
