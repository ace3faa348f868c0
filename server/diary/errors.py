"""Why a diary change was refused; the HTTP layer turns each into its 4xx reply."""

from __future__ import annotations

from typing import Any


class DiaryError(Exception):
    status = 400
    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra


class NotFound(DiaryError):
    """Missing, or another practice's (the two are never told apart)."""

    status = 404
    code = "not_found"

    def __init__(self, what: str, *, field: str | None = None) -> None:
        super().__init__(f"{what} not found", field=field)


class Invalid(DiaryError):
    status = 400
    code = "invalid_body"


class Conflict(DiaryError):
    status = 409

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.code = code
